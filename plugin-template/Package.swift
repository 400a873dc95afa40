// swift-tools-version:5.10
import PackageDescription

/// The Sluice checkout this transform is built against: its Swift SDK and its C header.
let sluiceRoot = "__SLUICE_ROOT__"
/// SwiftPM names a package used by path after its folder.
let sluicePackage = sluiceRoot.split(separator: "/").last.map { String($0) } ?? "sluice"

let package = Package(
    name: "__TRANSFORM_NAME__",
    platforms: [.macOS(.v13)],
    products: [
        // The plugin: .build/release/libsluice-__TRANSFORM_NAME__.so (.dylib on macOS).
        .library(name: "sluice-__TRANSFORM_NAME__", type: .dynamic, targets: ["__TRANSFORM_TYPE__Plugin"]),
    ],
    dependencies: [
        .package(path: sluiceRoot),
    ],
    targets: [
        .target(
            name: "__TRANSFORM_TYPE__Plugin",
            dependencies: [.product(name: "SluiceSDK", package: sluicePackage)],
            path: "Sources"
        ),
    ]
)
