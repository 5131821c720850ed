"""Builds the Rust library and its UniFFI Python module into the package.

`pip install ./bindings/python` builds the library with cargo (profile `release-ffi`) in the
repository, generates `pims_sdk/pims_ffi.py` with the crate's own `uniffi-bindgen`, and ships
both. PIMS_FFI_LIBRARY (a library built beforehand) and PIMS_UNIFFI_BINDGEN (the generator
binary) skip those cargo builds.
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
            cargo(["build", "--profile", "release-ffi", "-p", "pims-ffi", "--lib"])
            library = str(ROOT / "target" / "release-ffi" / LIBRARY)
        # The crate's own generator has the library's UniFFI version by construction.
        bindgen = os.environ.get("PIMS_UNIFFI_BINDGEN")
        command = [bindgen] if bindgen else [
            "cargo", "run", "--quiet", "-p", "pims-ffi", "--bin", "uniffi-bindgen", "--"]
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
