import NIOCore
import XCTest
@testable import SluiceHost

/// Reading a RESULT Rows body: counts that the bytes cannot back are refused.
final class CQLRowsTests: XCTestCase {
    /// <flags No_metadata><columns_count><rows_count>, then the cells.
    func rowsBody(columns: Int32, rows: Int32, cells: [UInt8] = []) -> CQLBodyReader {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int32(0x0004))
        buffer.writeInteger(columns)
        buffer.writeInteger(rows)
        buffer.writeBytes(cells)
        return CQLBodyReader(buffer)
    }

    func testRowsWithoutColumnsAreAProtocolViolation() {
        var reader = rowsBody(columns: 0, rows: Int32.max)
        XCTAssertThrowsError(try CQLRows(from: &reader, version: .v4)) { error in
            XCTAssertEqual((error as? CQLProtocolViolation)?.description.contains("2147483647 rows of 0 columns"), true, "\(error)")
        }
        var one = rowsBody(columns: 0, rows: 1)
        XCTAssertThrowsError(try CQLRows(from: &one, version: .v5))
    }

    func testNoRowsOfNoColumnsAndRowsWithCellsAreRead() throws {
        var empty = rowsBody(columns: 0, rows: 0)
        var cursor = try CQLRows(from: &empty, version: .v4).makeCursor()
        XCTAssertFalse(cursor.nextRow())
        var oneCell = rowsBody(columns: 1, rows: 1, cells: [0, 0, 0, 1, 7])
        let rows = try CQLRows(from: &oneCell, version: .v4)
        XCTAssertEqual(rows.rowCount, 1)
        XCTAssertEqual(rows.metadata.columnCount, 1)
    }
}
