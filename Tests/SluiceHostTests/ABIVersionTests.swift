import Foundation
import PluginABI
import XCTest

/// Holds the plugin header to its version: every change to `sluice_plugin.h` needs a minor (or
/// major) bump, recorded with the header's SHA-256 in `Sources/PluginABI/abi-versions.txt`.
final class ABIVersionTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let headerPath = root.appendingPathComponent("Sources/PluginABI/include/sluice_plugin.h").path
    static let versionsPath = root.appendingPathComponent("Sources/PluginABI/abi-versions.txt").path
    static let current = "\(SLUICE_ABI_VERSION_MAJOR).\(SLUICE_ABI_VERSION_MINOR)"

    /// One line of abi-versions.txt: "1.1 <sha256> released|unreleased".
    struct Recorded {
        let major: Int, minor: Int, hash: String, released: Bool
        var version: String { "\(major).\(minor)" }
    }

    func recordedVersions() throws -> [Recorded] {
        let text = try String(contentsOfFile: Self.versionsPath, encoding: .utf8)
        return try text.split(separator: "\n").compactMap { line in
            if line.hasPrefix("#") || line.allSatisfy(\.isWhitespace) { return nil }
            let fields = line.split(separator: " ")
            let numbers = fields.first?.split(separator: ".").compactMap { Int($0) } ?? []
            guard fields.count == 3, numbers.count == 2, fields[1].count == 64,
                  fields[2] == "released" || fields[2] == "unreleased"
            else {
                throw XCTSkip("malformed line in abi-versions.txt: '\(line)' (expected 'MAJOR.MINOR <sha256> released|unreleased')")
            }
            return Recorded(major: numbers[0], minor: numbers[1], hash: String(fields[1]), released: fields[2] == "released")
        }
    }

    /// SHA-256 of a file by coreutils' sha256sum (no crypto library in the test target).
    func sha256(of path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sha256sum", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "sha256sum failed")
        return String(decoding: output, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
    }

    func testHeaderMatchesTheHashRecordedForItsVersion() throws {
        let hash = try sha256(of: Self.headerPath)
        XCTAssertEqual(hash.count, 64)
        let recorded = try recordedVersions()
        guard let line = recorded.first(where: { $0.major == Int(SLUICE_ABI_VERSION_MAJOR) && $0.minor == Int(SLUICE_ABI_VERSION_MINOR) }) else {
            return XCTFail("""
                sluice_plugin.h declares ABI \(Self.current), but Sources/PluginABI/abi-versions.txt has no line for it. \
                Add this line: '\(Self.current) \(hash) unreleased'
                """)
        }
        guard line.hash != hash else { return }
        if line.released {
            XCTFail("""
                sluice_plugin.h changed, but ABI \(Self.current) is released with another header (recorded sha256 \(line.hash), \
                now \(hash)). A released ABI never changes: bump SLUICE_ABI_VERSION_MINOR to \
                \(SLUICE_ABI_VERSION_MINOR + 1) (or the major for an incompatible change), mark the functions you added \
                'SINCE \(SLUICE_ABI_VERSION_MAJOR).\(SLUICE_ABI_VERSION_MINOR + 1)', and run this test again: it then tells \
                the line to add to abi-versions.txt.
                """)
        } else {
            XCTFail("""
                sluice_plugin.h changed since the hash of ABI \(Self.current) was recorded. \(Self.current) is unreleased, \
                so no bump is needed: replace its line in Sources/PluginABI/abi-versions.txt with \
                '\(Self.current) \(hash) unreleased' (and mark what you added 'SINCE \(Self.current)').
                """)
        }
    }

    func testNoVersionIsRecordedTwiceOrAheadOfTheHeader() throws {
        let recorded = try recordedVersions()
        XCTAssertEqual(Set(recorded.map(\.version)).count, recorded.count, "a version is recorded twice")
        for r in recorded {
            let ahead = r.major > Int(SLUICE_ABI_VERSION_MAJOR)
                || (r.major == Int(SLUICE_ABI_VERSION_MAJOR) && r.minor > Int(SLUICE_ABI_VERSION_MINOR))
            XCTAssertFalse(ahead, "abi-versions.txt records ABI \(r.version), newer than the header's \(Self.current): was the version lowered?")
        }
        // Several minors may be unreleased together (1.1 and 1.2 on main before a release), but only
        // as the newest run of versions, ending with the header's own: nothing released after them.
        let unreleased = recorded.filter { !$0.released }
        func order(_ r: Recorded) -> Int { r.major * 1000 + r.minor }
        if let oldestUnreleased = unreleased.map(order).min() {
            for r in recorded where r.released {
                XCTAssertLessThan(order(r), oldestUnreleased, "ABI \(r.version) is released, but an older version is not: release in order")
            }
            XCTAssertTrue(unreleased.contains { $0.version == Self.current },
                          "versions are unreleased, but the header's own \(Self.current) is not among them")
        }
    }

    /// Every host-table field of a "since 1.x" section has a doc block saying "SINCE 1.x".
    func testFunctionsAddedAfter10SayWhen() throws {
        let header = try String(contentsOfFile: Self.headerPath, encoding: .utf8)
        guard let tableStart = header.range(of: "typedef struct sluice_host_api {"),
              let tableEnd = header.range(of: "} sluice_host_api;", range: tableStart.upperBound..<header.endIndex)
        else { return XCTFail("sluice_host_api not found") }
        var since: String?
        var checked = 0
        for line in header[tableStart.upperBound..<tableEnd.lowerBound].split(separator: "\n") {
            if let marker = line.range(of: #"since \d+\.\d+"#, options: .regularExpression) {
                since = String(line[marker].dropFirst("since ".count))
                continue
            }
            guard let since else { continue }
            let words = line.split(whereSeparator: { $0 == " " || $0 == ";" })
            guard words.count == 2, words[0].hasPrefix("sluice_host_"), words[0].hasSuffix("_fn") else { continue }
            guard let typedef = header.range(of: "(*\(words[0]))("),
                  let doc = header.range(of: "/**", options: .backwards, range: header.startIndex..<typedef.lowerBound)
            else { XCTFail("no typedef with a doc block for \(words[0])"); continue }
            XCTAssertTrue(header[doc.lowerBound..<typedef.lowerBound].contains("SINCE \(since)"),
                          "the doc block of \(words[0]) (host->\(words[1])) must say 'SINCE \(since)'")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 0, "no function found after a 'since 1.x' marker in sluice_host_api")
    }
}
