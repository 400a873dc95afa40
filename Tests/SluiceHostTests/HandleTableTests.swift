import Foundation
import XCTest
@testable import SluiceHost

final class HandleTableTests: XCTestCase {
    final class Thing {}

    func testARetiredHandleNeverResolvesAgainEvenWhenItsSlotIsReused() {
        let table = HandleTable.current
        let first = Thing()
        let old = table.register(first, kind: .call)
        XCTAssertTrue(table.resolve(old, .call, "test")?.object === first)
        table.retire(old)
        XCTAssertNil(table.resolve(old, .call, "test"))
        let second = Thing()
        let new = table.register(second, kind: .call)  // the same slot, a later generation
        XCTAssertNotEqual(old, new)
        XCTAssertNil(table.resolve(old, .call, "test"))
        XCTAssertTrue(table.resolve(new, .call, "test")?.object === second)
        table.retire(new)
        table.retire(new)  // twice: nothing happens
    }

    func testAHandleResolvesOnlyAsItsKind() {
        let table = HandleTable.current
        let handle = table.register(Thing(), kind: .timer)
        XCTAssertNil(table.resolve(handle, .call, "test"))
        XCTAssertNil(table.resolve(handle, .batch, "test"))
        XCTAssertNotNil(table.resolve(handle, .timer, "test"))
        table.retire(handle)
    }

    func testGarbageAndForeignHandlesAreRefused() {
        let table = HandleTable.current
        XCTAssertNil(table.resolve(OpaquePointer(bitPattern: 0xdead_beef), .call, "test"))
        XCTAssertNil(table.resolve(nil, .call, "test"))
        final class Box: @unchecked Sendable { var handle: OpaquePointer? }
        let box = Box()
        let thread = Thread {
            box.handle = HandleTable.current.register(Thing(), kind: .call)
        }
        thread.start()
        while !thread.isFinished { usleep(1000) }
        XCTAssertNotNil(box.handle)
        XCTAssertNil(table.resolve(box.handle, .call, "test"), "another thread's handle resolved here")
    }

    func testRetiringReleasesTheObject() {
        let table = HandleTable.current
        weak var gone: Thing?
        var handle: OpaquePointer?
        do {
            let thing = Thing()
            gone = thing
            handle = table.register(thing, kind: .ownedBatch)
        }
        XCTAssertNotNil(gone)
        table.retire(handle)
        XCTAssertNil(gone)
    }
}
