// swift-tools-version:5.9
import PackageDescription

/// The protect transform, built as .build/<config>/libsluice-protect.so — a package of its own, as
/// a user's plugin would be, because it depends on swift-crypto (AES-GCM): the root package, and so
/// `swift test`, never builds swift-crypto. scripts/build-plugins.sh builds it in release.
///
/// Sources/PluginABI and Sources/SluiceSDK are symbolic links to the repository's own header and
/// SDK (SwiftPM refuses target paths outside the package root), so the plugin always compiles
/// against the ABI of the host it is built with.
let package = Package(
    name: "protect",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "sluice-protect", type: .dynamic, targets: ["ProtectTransform"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    ],
    targets: [
        /// sluice_plugin.h: the whole contract between the host and a plugin.
        .target(name: "PluginABI", path: "Sources/PluginABI", exclude: ["abi-versions.txt"]),
        /// Swift types over the C ABI, linked statically into the plugin.
        .target(name: "SluiceSDK", dependencies: ["PluginABI"], path: "Sources/SluiceSDK"),
        /// The transform itself.
        .target(name: "ProtectTransform",
                dependencies: ["SluiceSDK", .product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/ProtectTransform"),
    ]
)
