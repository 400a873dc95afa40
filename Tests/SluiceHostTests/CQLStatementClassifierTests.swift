import NIOCore
import XCTest
@testable import SluiceHost

final class CQLStatementClassifierTests: XCTestCase {
    private func check(_ text: String, _ kind: CQLStatement.Kind, _ keyspace: String?, _ table: String?,
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(CQLStatement.classify(text), CQLStatement(kind: kind, keyspace: keyspace, table: table), text, file: file, line: line)
        XCTAssertEqual(CQLStatement.classify(ByteBuffer(string: text)), CQLStatement.classify(text), file: file, line: line)
    }

    func testDataStatements() {
        check("SELECT * FROM ks.t WHERE k = 1", .select, "ks", "t")
        check("select count(*), max(v) from t", .select, nil, "t")
        check("SELECT JSON DISTINCT k FROM \"MyKs\".\"My\"\"Table\"", .select, "MyKs", "My\"Table")
        check("SELECT CAST(v AS text), \"from\" FROM Ks.T", .select, "ks", "t")
        check("SELECT fn(x, (y)) FROM ks . t", .select, "ks", "t")
        check("INSERT INTO ks.users (id, name) VALUES (?, 'FROM x.y')", .insert, "ks", "users")
        check("insert into Users JSON '{}'", .insert, nil, "users")
        check("UPDATE ks.t USING TTL 10 SET v = 1 WHERE k = 2", .update, "ks", "t")
        check("DELETE v, w['FROM'] FROM ks.t WHERE k = 1", .delete, "ks", "t")
        check("DELETE FROM t WHERE k = 1", .delete, nil, "t")
    }

    func testCommentsAndCase() {
        check("-- a comment\n  /* block\n comment */ SeLeCt v // more\n FROM /* x.y */ ks.t", .select, "ks", "t")
        check("// only\nUSE \"CamelKs\"", .use, "CamelKs", nil)
        check("use MyKs;", .use, "myks", nil)
        check("   ", .other, nil, nil)
        check("/* unterminated", .other, nil, nil)
        check("SELECT * FROM", .select, nil, nil)
        check("SELECT 'unterminated FROM t", .select, nil, nil)
    }

    func testBatchDDLAndOthers() {
        check("BEGIN UNLOGGED BATCH INSERT INTO t (k) VALUES (1); APPLY BATCH", .batch, nil, nil)
        check("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy'}", .ddl, "ks", nil)
        check("CREATE TABLE ks.t (k int PRIMARY KEY)", .ddl, "ks", "t")
        check("create table if not exists T (k int primary key)", .ddl, nil, "t")
        check("ALTER TABLE ks.t ADD v text", .ddl, "ks", "t")
        check("DROP TABLE IF EXISTS ks.t", .ddl, "ks", "t")
        check("DROP KEYSPACE ks", .ddl, "ks", nil)
        check("CREATE INDEX IF NOT EXISTS idx ON ks.t (v)", .ddl, "ks", "t")
        check("CREATE CUSTOM INDEX ON t (v) USING 'x'", .ddl, nil, "t")
        check("DROP INDEX ks.idx", .ddl, "ks", nil)
        check("CREATE MATERIALIZED VIEW ks.v AS SELECT * FROM ks.t WHERE k IS NOT NULL PRIMARY KEY (k)", .ddl, "ks", "v")
        check("CREATE TYPE ks.address (street text)", .ddl, "ks", "address")
        check("CREATE OR REPLACE FUNCTION ks.f (x int) CALLED ON NULL INPUT RETURNS int LANGUAGE java AS $$ return x; $$", .ddl, "ks", nil)
        check("CREATE ROLE alice WITH PASSWORD = 'x'", .ddl, nil, nil)
        check("TRUNCATE TABLE ks.t", .other, "ks", "t")
        check("GRANT SELECT ON ks.t TO alice", .other, nil, nil)
        XCTAssertEqual(CQLStatement.classify("SELECT * FROM t").keyspace(orConnection: "current"), "current")
    }

    /// Keywords and names beyond ASCII are lower-cased as Unicode text (the lexer compares ASCII
    /// words byte by byte and lower-cases anything else as a String).
    func testWordsBeyondASCII() {
        check("DROP \u{212A}EYSPACE ks", .ddl, "ks", nil)  // KELVIN SIGN lower-cases to k
        check("SELECT * FROM \u{212A}s.Straße", .select, "ks", "straße")
        check("UPDATE ÉTÉ.\"Été\" SET v = 1", .update, "été", "Été")
        check("SELECT * FROM \"a\"\"b\"\"\".\"unterminated\"\"", .select, "a\"b\"", "unterminated\"")
        check("SELECTé * FROM t", .other, nil, nil)
        XCTAssertEqual(CQLStatement.classify("SELECT * FROM other.t").keyspace(orConnection: "current"), "other")
    }

    /// Edges of the lexer's byte loops: literals and comments that end at the text's last byte or
    /// run past it, doubled quotes, $$ bodies, and ASCII symbols next to letters (@[`{ are not words).
    func testLexerEdges() {
        check("", .other, nil, nil)
        check("SELECT 'it''s FROM x.y', $$FROM a.b$$ FROM ks.t --", .select, "ks", "t")
        check("SELECT $$ FROM a.b", .select, nil, nil)
        check("SELECT v FROM ks.t/**/", .select, "ks", "t")
        check("SELECT v FROM/* x */ks/**/./**/t", .select, "ks", "t")
        check("SELECT m['FROM'], @x, `y`, {z} FROM Ks_1.T_2", .select, "ks_1", "t_2")
        check("SELECT * FROM \"\"\"q\"", .select, nil, "\"q")
        check("SELECT \"FROM\" FROM \"Ks\".\"T\"", .select, "Ks", "T")
        check("SELECT x FROM ks.", .select, nil, "ks")
        check("USE", .use, nil, nil)
        check("INSERT", .insert, nil, nil)
        check("INSERT INTO @", .insert, nil, nil)
    }
}
