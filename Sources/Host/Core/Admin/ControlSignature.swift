/// The parameters a plugin declared for a control function (`sluice_control_function.params`),
/// parsed once at load, and the conversion of an operator's text arguments by them.
///
/// The declaration is C text, as in a prototype: `"const char *policy, int64_t limit"`. The types
/// are the small set the header documents; a byte buffer is the pair
/// `const uint8_t *NAME, size_t NAME_len` and counts as one parameter.
public struct ControlSignature: Equatable, Sendable {
    public enum ParameterType: String, Equatable, Sendable {
        case int64 = "int64_t"
        case double = "double"
        case bool = "bool"
        case string = "const char *"
        case bytes = "const uint8_t *, size_t"
    }

    public struct Parameter: Equatable, Sendable {
        public let name: String
        public let type: ParameterType
        /// For a byte buffer, the name of its length parameter.
        public let lengthName: String?
    }

    public let parameters: [Parameter]

    /// The most parameters a control function may declare.
    public static let maximumParameters = 8

    /// The declaration as the operator sees it, e.g. `const char *policy, int64_t limit`.
    public var text: String {
        parameters.map { p in
            switch p.type {
            case .string: return "const char *\(p.name)"
            case .bytes: return "const uint8_t *\(p.name), size_t \(p.lengthName ?? "len")"
            default: return "\(p.type.rawValue) \(p.name)"
            }
        }.joined(separator: ", ")
    }

    /// Why a declaration could not be parsed.
    public struct DeclarationError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Parses a declaration; `""` and `"void"` declare no parameter.
    public static func parse(_ declaration: String) throws -> ControlSignature {
        let trimmed = declaration.trimmingSpaces
        if trimmed.isEmpty || trimmed == "void" { return ControlSignature(parameters: []) }
        let pieces = trimmed.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingSpaces }
        var parameters: [Parameter] = []
        var index = 0
        while index < pieces.count {
            let (type, name) = try parseOne(pieces[index])
            switch type {
            case "int64_t": parameters.append(Parameter(name: name, type: .int64, lengthName: nil))
            case "double": parameters.append(Parameter(name: name, type: .double, lengthName: nil))
            case "bool": parameters.append(Parameter(name: name, type: .bool, lengthName: nil))
            case "const char *": parameters.append(Parameter(name: name, type: .string, lengthName: nil))
            case "const uint8_t *":
                guard index + 1 < pieces.count, let (lengthType, lengthName) = try? parseOne(pieces[index + 1]),
                      lengthType == "size_t"
                else {
                    throw DeclarationError(description: "'\(pieces[index])' must be followed by its length, 'size_t \(name)_len'")
                }
                parameters.append(Parameter(name: name, type: .bytes, lengthName: lengthName))
                index += 1
            case "size_t":
                throw DeclarationError(description: "'\(pieces[index])': size_t only follows a const uint8_t * (the length of a byte buffer)")
            default:
                throw DeclarationError(description: "'\(pieces[index])': type '\(type)' is not one of int64_t, double, bool, const char *, const uint8_t * + size_t")
            }
            index += 1
        }
        guard parameters.count <= maximumParameters else {
            throw DeclarationError(description: "\(parameters.count) parameters; at most \(maximumParameters) are allowed")
        }
        var seen: Set<String> = []
        for p in parameters {
            for n in [p.name] + (p.lengthName.map { [$0] } ?? []) where !seen.insert(n).inserted {
                throw DeclarationError(description: "parameter name '\(n)' is used twice")
            }
        }
        return ControlSignature(parameters: parameters)
    }

    /// One "TYPE NAME" piece: the normalised type and the name.
    private static func parseOne(_ piece: String) throws -> (String, String) {
        // The name is the trailing identifier; everything before it is the type.
        var nameStart = piece.endIndex
        while nameStart > piece.startIndex, piece[piece.index(before: nameStart)].isIdentifierCharacter {
            nameStart = piece.index(before: nameStart)
        }
        let name = String(piece[nameStart...])
        let type = String(piece[..<nameStart]).trimmingSpaces
        guard let first = name.first, first.isLetter || first == "_", !type.isEmpty else {
            throw DeclarationError(description: "'\(piece)': expected 'TYPE NAME' (e.g. 'int64_t limit')")
        }
        // "const char*", "const char *", "const  char  *" all mean the same.
        let words = type.replacingOccurrences(of: "*", with: " * ").split(separator: " ").joined(separator: " ")
        let normalised = words.hasSuffix(" *") ? String(words.dropLast(2)) + " *" : words
        return (normalised, name)
    }

    /// A converted argument, ready to be passed.
    public enum Argument: Equatable, Sendable {
        case int64(Int64)
        case double(Double)
        case bool(Bool)
        /// UTF-8 without a terminating NUL (the invoker adds it).
        case string([UInt8])
        case bytes([UInt8])
    }

    /// Why the operator's arguments do not fit the declaration (nothing was called).
    public struct ArgumentError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Converts text arguments by the declared types; throws before anything is called.
    public func convert(_ texts: [String]) throws -> [Argument] {
        guard texts.count == parameters.count else {
            throw ArgumentError(description: "expected \(parameters.count) argument(s) (\(text.isEmpty ? "none" : text)), got \(texts.count)")
        }
        return try zip(parameters, texts).enumerated().map { i, pair in
            let (parameter, text) = pair
            func refuse(_ what: String) -> ArgumentError {
                ArgumentError(description: "argument \(i + 1) (\(parameter.name)): expected \(what), got '\(text)'")
            }
            switch parameter.type {
            case .int64:
                guard let value = Self.strictInt64(text) else { throw refuse("an integer (int64_t)") }
                return .int64(value)
            case .double:
                guard let value = Self.strictDouble(text) else { throw refuse("a finite number (double)") }
                return .double(value)
            case .bool:
                switch text.lowercased() {
                case "true", "1", "yes", "on": return .bool(true)
                case "false", "0", "no", "off": return .bool(false)
                default: throw refuse("a bool (true/false, 1/0, yes/no, on/off)")
                }
            case .string:
                let bytes = Array(text.utf8)
                guard !bytes.contains(0) else { throw refuse("text without a NUL byte (const char *)") }
                return .string(bytes)
            case .bytes:
                return .bytes(Array(text.utf8))
            }
        }
    }

    /// An optional sign and decimal digits only, within Int64.
    static func strictInt64(_ text: String) -> Int64? {
        var digits = Substring(text)
        if digits.first == "-" || digits.first == "+" { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (48...57).contains($0) }) else { return nil }
        return Int64(text.first == "+" ? String(text.dropFirst()) : text)
    }

    /// A decimal number (digits, point, exponent); no "inf", "nan" or hexadecimal.
    static func strictDouble(_ text: String) -> Double? {
        guard !text.isEmpty,
              text.utf8.allSatisfy({ (48...57).contains($0) || $0 == 46 || $0 == 45 || $0 == 43 || $0 == 101 || $0 == 69 }),
              text.utf8.contains(where: { (48...57).contains($0) }),
              let value = Double(text), value.isFinite
        else { return nil }
        return value
    }
}

private extension Character {
    var isIdentifierCharacter: Bool { isASCII && (isLetter || isNumber || self == "_") }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}
