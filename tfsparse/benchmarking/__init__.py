"""Timing `.tflite` files where XNNPACK's sparse kernels can run, against the right baseline.

`bench` times on the host or on an emulated arm64 CPU (`arm64` provisions qemu-user and the
aarch64 LiteRT build; `_arm64_worker` runs inside it); `android` times on a phone or emulator
over adb (`adb`), parsing `benchmark_model`'s output (`benchmark_model`). Every sparse file is
timed beside its dense twin (`tfsparse.tflite.twin`).
"""
