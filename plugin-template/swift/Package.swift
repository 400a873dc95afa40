// swift-tools-version:5.9
import PackageDescription

/// The transform __TRANSFORM_NAME__, built as the plugin .build/<config>/libsluice-__TRANSFORM_NAME__.so.
///
/// Everything it compiles against is in this folder: Sources/PluginABI is a copy of Sluice's ABI
/// header and Sources/SluiceSDK a copy of its Swift SDK (Sluice __SLUICE_VERSION__), so `swift build`
/// resolves no package and needs no network.
let package = Package(
    name: "__TRANSFORM_NAME__",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "sluice-__TRANSFORM_NAME__", type: .dynamic, targets: ["__TRANSFORM_TYPE__Transform"]),
    ],
    targets: [
        /// sluice_plugin.h: the whole contract between the host and a plugin.
        .target(name: "PluginABI", path: "Sources/PluginABI"),
        /// Swift types over the C ABI, linked statically into the plugin.
        .target(name: "SluiceSDK", dependencies: ["PluginABI"], path: "Sources/SluiceSDK"),
        /// The transform itself.
        .target(name: "__TRANSFORM_TYPE__Transform", dependencies: ["SluiceSDK"],
                path: "Sources/__TRANSFORM_TYPE__Transform"),
    ]
)
