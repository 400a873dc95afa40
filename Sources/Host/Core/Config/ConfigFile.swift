#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a config file, saying precisely why when it cannot: a missing file, a directory, a FIFO
/// or a device (which are not config files, and a FIFO would block start-up until someone writes to
/// it), a file too large, or bytes that are not UTF-8.
enum ConfigFile {
    struct Problem: Error {
        let message: String
    }

    static func contents(of path: String, maxBytes: Int) throws -> String {
        // O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked on the opened
        // file itself, so it cannot change between the check and the read.
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw Problem(message: "cannot open the config file: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw Problem(message: "cannot read the config file: \(String(cString: strerror(errno)))")
        }
        let type = status.st_mode & S_IFMT
        guard type == S_IFREG else {
            throw Problem(message: "the config file is \(describe(fileType: type)), not a regular file")
        }
        guard Int(status.st_size) <= maxBytes else {
            throw Problem(message: "the config file is \(status.st_size) bytes, more than the \(maxBytes) accepted")
        }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size) + 1)
        var count = 0
        while count < bytes.count {
            let got = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + count, $0.count - count) }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else {
                throw Problem(message: "cannot read the config file: \(String(cString: strerror(errno)))")
            }
            if got == 0 { break }
            count += got
            guard count <= maxBytes else {
                throw Problem(message: "the config file is more than the \(maxBytes) bytes accepted")
            }
        }
        guard let text = String(validating: bytes[..<count], as: UTF8.self) else {
            throw Problem(message: "the config file is not UTF-8 text")
        }
        return text
    }

    private static func describe(fileType: mode_t) -> String {
        switch fileType {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        default: return "not a file"
        }
    }
}
