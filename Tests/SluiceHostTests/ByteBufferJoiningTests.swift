import NIOCore
import XCTest
@testable import SluiceHost

final class ByteBufferJoiningTests: XCTestCase {
    /// A read that ends inside a frame, whose earlier frames are still referenced: the join copies
    /// only the unread bytes, so repeated joins do not grow (they used to carry every earlier byte).
    func testJoinCopiesOnlyTheUnreadBytesWhenEarlierFramesAreStillHeld() {
        var held: [ByteBuffer] = []
        var leftover: ByteBuffer?
        var capacities: [Int] = []
        for _ in 0..<50 {
            var read = ByteBufferAllocator().buffer(capacity: 65536)
            read.writeBytes([UInt8](repeating: 0x61, count: 65536))
            var buffer = ByteBuffer.joining(&leftover, read)
            capacities.append(buffer.capacity)
            held.append(buffer.readSlice(length: buffer.readableBytes - 1000)!)  // a frame handed on
            leftover = buffer  // 1000 bytes of a frame still arriving
        }
        XCTAssertEqual(held.count, 50)
        XCTAssertLessThan(capacities.max()!, 2 * 65536 + 4096, "\(capacities)")
    }

    func testJoinKeepsTheBytesInOrder() {
        var leftover: ByteBuffer? = ByteBuffer(string: "xx$5\r\nhel")
        leftover!.moveReaderIndex(forwardBy: 2)
        let joined = ByteBuffer.joining(&leftover, ByteBuffer(string: "lo\r\n"))
        XCTAssertNil(leftover)
        XCTAssertEqual(String(buffer: joined), "$5\r\nhello\r\n")
        var none: ByteBuffer?
        XCTAssertEqual(String(buffer: ByteBuffer.joining(&none, ByteBuffer(string: "+OK\r\n"))), "+OK\r\n")
    }
}
