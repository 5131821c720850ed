"""Builds the Rust library and its UniFFI Python module into the package.

`pip install ./bindings/python` runs `cargo build --release -p pims-ffi` in the repository,
generates `pims_sdk/pims_ffi.py` with the crate's own `uniffi-bindgen`, and ships both.
Set PIMS_FFI_LIBRARY to a library built beforehand to skip the cargo build.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent.parent.parent
LIBRARY = {"darwin": "libpims_ffi.dylib", "win32": "pims_ffi.dll"}.get(sys.platform, "libpims_ffi.so")


class BuildWithRust(build_py):
    def run(self):
        super().run()
        package = (Path(self.build_lib) / "pims_sdk").resolve()
        package.mkdir(parents=True, exist_ok=True)
        library = os.environ.get("PIMS_FFI_LIBRARY")
        if not library:
            cargo(["build", "--release", "-p", "pims-ffi"])
            library = str(ROOT / "target" / "release" / LIBRARY)
        # The generator built beside the library has the same UniFFI version by construction.
        bindgen = Path(library).parent / "uniffi-bindgen"
        command = [str(bindgen)] if bindgen.exists() else [
            "cargo", "run", "--quiet", "--release", "-p", "pims-ffi", "--bin", "uniffi-bindgen", "--"]
        subprocess.run([*command, "generate", "--no-format", "--library", library,
                        "--language", "python", "--out-dir", str(package)], cwd=ROOT, check=True)
        shutil.copy(library, package / LIBRARY)


def cargo(args):
    subprocess.run(["cargo", *args], cwd=ROOT, check=True)


class NativeDistribution(Distribution):
    # The wheel carries a native library: tag it for this platform, not "any".
    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithRust}, distclass=NativeDistribution)
