#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOConcurrencyHelpers

/// Private, immutable copies of the plugin files this process loads.
///
/// dlopen maps a shared object's file; an operator who rewrites that file in place (`cp new.so
/// plugins/`, which truncates and writes the same inode) changes the code under the running host,
/// and the next call into the plugin jumps into whatever bytes are there now (it crashed the host
/// with signal 11). So the host never maps a file of the plugin directory: each is first copied into
/// a directory only this process uses, read-only, and that copy is what dlopen opens. Nothing else
/// writes there, so the mapped code stays what was loaded whatever happens to the plugin directory.
///
/// - The directory is `$XDG_RUNTIME_DIR/sluice-<pid>-XXXXXX` (else in `$TMPDIR`, /tmp or /var/tmp,
///   the first not mounted noexec), mode 0700,
///   made on first use and removed at exit. Directories left by processes that no longer exist (a
///   crash, SIGKILL) are removed when the next Sluice of the same user makes its own.
/// - A copy is named by the file's name and a fingerprint of its contents: the same file loaded
///   twice is the same copy (dlopen then returns the object already loaded), a changed file is a
///   new copy with a new name (so it can be loaded beside the old one, as a hot reload needs).
///   The fingerprint is a fast 64-bit hash for naming, not a security check: whoever can write the
///   plugin directory can run code in the host anyway.
/// - A copy is written under a temporary name and renamed into place, so a copy is never seen
///   half-written.
final class PrivatePluginCopies: Sendable {
    static let shared = PrivatePluginCopies()

    struct Failure: Error {
        let reason: String
    }

    private let directory = NIOLockedValueBox<String?>(nil)

    /// Where dlopen should open `path` from: the private copy of its current contents.
    func copy(of path: String) throws -> String {
        let contents: Data
        do {
            contents = try Data(contentsOf: URL(fileURLWithPath: path))  // read, not mapped: the file may change under us
        } catch {
            throw Failure(reason: "cannot read the file: \((error as NSError).localizedFailureReason ?? error.localizedDescription)")
        }
        let name = "\(Self.fingerprint(contents))-\((path as NSString).lastPathComponent)"
        let directory = try privateDirectory()
        let destination = directory + "/" + name
        if access(destination, F_OK) == 0 { return destination }
        let temporary = directory + "/.incoming-" + name
        guard FileManager.default.createFile(atPath: temporary, contents: contents, attributes: [.posixPermissions: 0o500]) else {
            throw Failure(reason: "cannot copy it into \(directory): \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw Failure(reason: "cannot copy it into \(directory): \(reason)")
        }
        return destination
    }

    /// The process's private directory, made on first use.
    private func privateDirectory() throws -> String {
        try directory.withLockedValue { existing in
            if let existing { return existing }
            let base = Self.baseDirectory()
            Self.removeLeftovers(in: base)
            var template = Array("\(base)/sluice-\(getpid())-XXXXXX".utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
                throw Failure(reason: "cannot make a private plugin directory in \(base): \(String(cString: strerror(errno)))")
            }
            let path = String(cString: made)
            existing = path
            Self.directoryToRemoveAtExit.withLockedValue { $0 = path }
            atexit { PrivatePluginCopies.removeAtExit() }
            return path
        }
    }

    private static let directoryToRemoveAtExit = NIOLockedValueBox<String?>(nil)

    private static func removeAtExit() {
        guard let path = directoryToRemoveAtExit.withLockedValue({ $0 }) else { return }
        try? FileManager.default.removeItem(atPath: path)
    }

    /// $XDG_RUNTIME_DIR (per user, in memory, cleaned at logout), else $TMPDIR, /tmp, /var/tmp: the
    /// first that is writable and not mounted noexec (dlopen cannot map code from a noexec mount).
    static func baseDirectory() -> String {
        let environment = ProcessInfo.processInfo.environment
        let candidates = [environment["XDG_RUNTIME_DIR"], environment["TMPDIR"], "/tmp", "/var/tmp"]
        for case let candidate? in candidates where !candidate.isEmpty && access(candidate, W_OK | X_OK) == 0 {
            #if os(Linux)
            var info = statvfs()
            if statvfs(candidate, &info) == 0, info.f_flag & noExecFlag != 0 { continue }
            #endif
            return candidate
        }
        return "/tmp"
    }

    /// Linux's ST_NOEXEC (bits/statvfs.h; Glibc's module does not export the GNU flags).
    private static let noExecFlag: UInt = 8

    /// Removes the private directories of this user's Sluice processes that no longer exist.
    private static func removeLeftovers(in base: String) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: base) else { return }
        for entry in entries where entry.hasPrefix("sluice-") {
            let parts = entry.split(separator: "-")
            guard parts.count == 3, let pid = pid_t(parts[1]), parts[2].count == 6 else { continue }
            let path = base + "/" + entry
            var status = stat()
            guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFDIR, status.st_uid == getuid() else { continue }
            if kill(pid, 0) == -1, errno == ESRCH { try? FileManager.default.removeItem(atPath: path) }
        }
    }

    /// FNV-1a over 8-byte words (and the tail bytes), with the length mixed in: 16 hex digits.
    static func fingerprint(_ data: Data) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        let prime: UInt64 = 0x0000_0100_0000_01b3
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let words = raw.count / 8
            for i in 0..<words {
                hash = (hash ^ raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* prime
            }
            for i in (words * 8)..<raw.count {
                hash = (hash ^ UInt64(raw[i])) &* prime
            }
        }
        hash = (hash ^ UInt64(data.count)) &* prime
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
