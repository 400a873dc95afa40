import Foundation
import XCTest
@testable import SluiceHost

/// The host opens private copies of plugin files, so rewriting a file of the plugin directory never
/// changes code it runs (issue 16: `cp` over a loaded plugin crashed the host).
final class PrivatePluginCopiesTests: XCTestCase {
    func testACopyIsPrivateReadOnlyAndNamedByItsContents() throws {
        let directory = NSTemporaryDirectory() + "sluice-copies-test-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let original = directory + "/libexample.so"
        try Data("first build".utf8).write(to: URL(fileURLWithPath: original))

        let first = try PrivatePluginCopies.shared.copy(of: original)
        XCTAssertNotEqual(first, original)
        XCTAssertTrue(first.hasSuffix("-libexample.so"), first)
        XCTAssertEqual(try PrivatePluginCopies.shared.copy(of: original), first, "the same contents, the same copy")
        let attributes = try FileManager.default.attributesOfItem(atPath: first)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o500)
        let parent = (first as NSString).deletingLastPathComponent
        let parentAttributes = try FileManager.default.attributesOfItem(atPath: parent)
        XCTAssertEqual((parentAttributes[.posixPermissions] as? NSNumber)?.intValue, 0o700)
        XCTAssertTrue((parent as NSString).lastPathComponent.hasPrefix("sluice-\(getpid())-"), parent)

        // Rewritten in place, as cp does: the copy already made keeps the old bytes, and the new
        // contents get a copy of their own.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: original))
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data("second build".utf8))
        try handle.close()
        XCTAssertEqual(try String(contentsOfFile: first, encoding: .utf8), "first build")
        let second = try PrivatePluginCopies.shared.copy(of: original)
        XCTAssertNotEqual(second, first)
        XCTAssertEqual(try String(contentsOfFile: second, encoding: .utf8), "second build")
    }

    func testALoadedPluginRunsFromItsCopy() throws {
        let path = PluginLoaderTests.fixtures + "/libmisbehaving.so"
        guard case .success(let plugin) = PluginLoader.load(path: path) else { return XCTFail("misbehaving refused") }
        XCTAssertEqual(plugin.path, path)
        XCTAssertNotEqual(plugin.loadedFrom, path)
        XCTAssertTrue(FileManager.default.fileExists(atPath: plugin.loadedFrom))
    }
}
