import Foundation
import NIOCore
import NIOEmbedded
import PluginABI
import XCTest
@testable import SluiceHost

final class HandleTableTests: XCTestCase {
    final class Thing {}

    func testARetiredHandleNeverResolvesAgainEvenWhenItsSlotIsReused() {
        let table = HandleTable.current
        let first = Thing()
        let old = table.register(first, kind: .call)
        XCTAssertTrue(table.resolve(old, .call, "test")?.object.takeUnretainedValue() === first)
        table.retire(old)
        XCTAssertNil(table.resolve(old, .call, "test"))
        let second = Thing()
        let new = table.register(second, kind: .call)  // the same slot, a later generation
        XCTAssertNotEqual(old, new)
        XCTAssertNil(table.resolve(old, .call, "test"))
        XCTAssertTrue(table.resolve(new, .call, "test")?.object.takeUnretainedValue() === second)
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

    func testALentHandleIsRefusedOnceRetiredAndTheReservedSlotsNextLoanGetsANewOne() {
        let table = HandleTable.current
        let slot = table.reserveSlot()
        let first = Thing()
        let old = table.lend(first, slot: slot, kind: .call, step: Self.step)
        XCTAssertTrue(table.resolve(old, .call, "test")?.object.takeUnretainedValue() === first)
        XCTAssertTrue(HandleTable.resolve(old, .call, "test")?.object.takeUnretainedValue() === first)
        XCTAssertNil(HandleTable.resolve(old, .batch, "test"), "a call handle resolved as a batch")
        table.retire(slot: slot)
        XCTAssertNil(HandleTable.resolve(old, .call, "test"))
        let second = Thing()
        let new = table.lend(second, slot: slot, kind: .call, step: Self.step)  // the same slot, lent again
        XCTAssertNotEqual(old, new)
        XCTAssertNil(HandleTable.resolve(old, .call, "test"), "a handle of the slot's earlier loan resolved")
        XCTAssertTrue(HandleTable.resolve(new, .call, "test")?.object.takeUnretainedValue() === second)
        table.unreserve(slot: slot)
        XCTAssertNil(HandleTable.resolve(new, .call, "test"), "a handle of an unreserved slot resolved")
        // The slot went back to the free list: issued again, it still refuses the old handles.
        let issued = table.register(Thing(), kind: .call)
        XCTAssertNil(HandleTable.resolve(old, .call, "test"))
        XCTAssertNil(HandleTable.resolve(new, .call, "test"))
        XCTAssertNotNil(HandleTable.resolve(issued, .call, "test"))
        table.retire(issued)
    }

    func testALentObjectIsNotRetained() {
        let table = HandleTable.current
        let slot = table.reserveSlot()
        weak var gone: Thing?
        do {
            let thing = Thing()
            gone = thing
            _ = table.lend(thing, slot: slot, kind: .lentBatch, step: Self.step)
            table.retire(slot: slot)  // the owner retires before it lets go
        }
        XCTAssertNil(gone)
        table.unreserve(slot: slot)
    }

    func testAHandleOfAThreadThatExitedIsRefusedOnANewThread() {
        final class Box: @unchecked Sendable {
            var handle: OpaquePointer?
            var resolved = true
        }
        let box = Box()
        let thing = Thing()
        let first = Thread { box.handle = HandleTable.current.register(thing, kind: .call) }
        first.start()
        while !first.isFinished { usleep(1000) }
        // A later thread may get the exited one's pthread_t; its handles must still be refused there.
        let second = Thread { box.resolved = HandleTable.resolve(box.handle, .call, "test") != nil }
        second.start()
        while !second.isFinished { usleep(1000) }
        XCTAssertNotNil(box.handle)
        XCTAssertFalse(box.resolved)
        XCTAssertNil(HandleTable.resolve(box.handle, .call, "test"))
    }

    // MARK: a call object reused for the step's next batch

    /// What the test transform's on_requests saw, per batch: its call handle and request batch handle.
    nonisolated(unsafe) static var seen: [(call: OpaquePointer?, requests: OpaquePointer?, object: ObjectIdentifier?)] = []
    /// Made by hand, not by RuntimeBuilder: marked as configured (config_new "ran"), or no instance
    /// is made from it (a freed config is refused).
    static let step: TransformStep = {
        let step = makeStep()
        step.hasConfig = true
        return step
    }()
    static func makeStep() -> TransformStep { TransformStep(
        pluginName: "test", transformName: "fail-at-once", label: "main[0] fail-at-once",
        descriptor: LoadedTransform(
            name: "fail-at-once", description: "", protocols: UInt32(SLUICE_PROTOCOL_REDIS),
            configNew: { _, _, _ in SLUICE_OK }, configFree: nil, instanceNew: nil, instanceFree: nil,
            onRequests: { _, call, requests in
                let object = HandleTable.resolve(call, .call, "test").map { ObjectIdentifier($0.object.takeUnretainedValue()) }
                HandleTableTests.seen.append((call, requests, object))
                return HostAPI.table.pointee.call_fail(call, "no", 2)  // completed inside the hook
            },
            onResponses: nil)) }

    final class Collect: ResponseReceiver {
        var outcomes: [ChainOutcome] = []
        func receive(_ outcome: ChainOutcome) { outcomes.append(outcome) }
    }

    func testAKeptHandleOfAReusedCallIsRefusedAfterTheCallCompleted() throws {
        let loop = EmbeddedEventLoop()
        let plan = RuntimePlan(chains: [ChainPlan(name: "main", steps: [.transform(Self.step)])], sinks: [])
        let session = ChainSession(eventLoop: loop, allocator: ByteBufferAllocator(), plan: plan,
                                   clientAddress: "127.0.0.1:1", mainChain: 0)
        let chain = try session.chain(0)
        let receiver = Collect()
        Self.seen = []
        let api = HostAPI.table.pointee
        for _ in 0..<3 {
            let batch = Batch(kind: Batch.requests, protocolID: Batch.redis,
                              messages: [ByteBuffer(string: "*1\r\n$4\r\nPING\r\n")])
            chain.run(batch, from: 0, receiver: receiver)
        }
        XCTAssertEqual(receiver.outcomes.count, 3)
        XCTAssertEqual(Self.seen.count, 3)
        // The chain reused one call object for the three batches (the point of the test)...
        XCTAssertNotNil(Self.seen[0].object)
        XCTAssertEqual(Set(Self.seen.map(\.object)).count, 1, "the call object was not reused")
        // ...but every use got handles of its own, and the kept ones are refused.
        XCTAssertEqual(Set(Self.seen.map(\.call)).count, 3)
        XCTAssertEqual(Set(Self.seen.map(\.requests)).count, 3)
        for (call, requests, _) in Self.seen {
            XCTAssertEqual(api.call_pass(call), SLUICE_ERROR_STATE)
            XCTAssertEqual(api.call_fail(call, "again", 5), SLUICE_ERROR_STATE)
            XCTAssertNil(api.call_data(call))
            XCTAssertEqual(api.batch_count(requests), 0)
            XCTAssertEqual(api.batch_kind(requests), -1)
        }
        XCTAssertEqual(receiver.outcomes.count, 3, "a stale handle completed a call")
        session.close()
    }
}
