// swift-tools-version:5.10
import PackageDescription

/// Built-in transforms written in Swift: each is a dynamic library loaded by the host with dlopen,
/// exactly as a user's plugin would be. (The C plugin under Plugins/command-filter is built by its
/// own Makefile, without Swift.)
let swiftPlugins: [(product: String, target: String, path: String)] = [
    ("sluice-tee", "TeePlugin", "Plugins/tee"),
    ("sluice-redirect", "RedirectPlugin", "Plugins/redirect"),
    ("sluice-debug-printer", "DebugPrinterPlugin", "Plugins/debug-printer"),
]

/// Swift test fixtures built as plugins (scripts/build-test-fixtures.sh): product, target, path.
let swiftFixtures: [(product: String, target: String, path: String)] = [
    ("sluice-reach-swift", "ReachSwiftFixture", "Tests/fixtures/swift-reach"),
    ("fixture-swift", "SwiftFixturePlugin", "Tests/fixtures/swift-plugin"),
]

/// The host's hot path is single-threaded per event loop by design; the runtime's dynamic exclusivity
/// checks cost a few percent of a proxied request (seen in perf), so the host is built without them.
/// (Only the host: plugins built against SluiceSDK from another package may not use unsafe flags.)
let hostSwiftSettings: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"])]

let package = Package(
    name: "Sluice",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .library(name: "SluiceHost", targets: ["SluiceHost"]),
        .library(name: "SluiceSDK", targets: ["SluiceSDK"]),
    ] + (swiftPlugins + swiftFixtures).map { .library(name: $0.product, type: .dynamic, targets: [$0.target]) },
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.65.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.27.0"),
    ],
    targets: [
        /// The one C header that is the whole host/plugin contract.
        .target(name: "PluginABI", path: "Sources/PluginABI", exclude: ["abi-versions.txt"]),
        /// libyaml (apt: libyaml-dev) as a system library.
        .systemLibrary(name: "CYaml", path: "Sources/CYaml", providers: [.apt(["libyaml-dev"])]),
        /// liblz4 and libsnappy (apt: liblz4-dev, libsnappy-dev): CQL frame and segment compression.
        .systemLibrary(name: "CLZ4", path: "Sources/CLZ4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CSnappy", path: "Sources/CSnappy", providers: [.apt(["libsnappy-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        /// libffi (apt: libffi-dev): the host calls plugins' control functions by their declared signature.
        .systemLibrary(name: "CFFI", path: "Sources/CFFI", providers: [.apt(["libffi-dev"])]),
        /// The worker's crash record: a thread-local "running step" and the fatal-signal handler.
        .target(name: "CrashRecord", path: "Sources/CrashRecord"),
        .target(
            name: "SluiceHost",
            dependencies: [
                "PluginABI", "CYaml", "CLZ4", "CSnappy", "CZlib", "CFFI", "CrashRecord",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Sources/Host",
            swiftSettings: hostSwiftSettings
        ),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceHost",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/sluice"
        ),
        /// Thin Swift layer over the C ABI, linked statically into each Swift plugin.
        .target(name: "SluiceSDK", dependencies: ["PluginABI"], path: "Sources/SluiceSDK"),
        .testTarget(
            name: "SluiceHostTests",
            dependencies: ["SluiceHost", "PluginABI", "SluiceSDK",
                           .product(name: "NIOEmbedded", package: "swift-nio")],
            path: "Tests/SluiceHostTests"
        ),
    ] + (swiftPlugins + swiftFixtures).map {
        .target(name: $0.target, dependencies: ["SluiceSDK", "PluginABI"], path: $0.path)
    }
)
