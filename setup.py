"""Build hook: the C extension for bit-packed binary convolution (fa_lib.kernels) is declared here.

Everything else about the package lives in pyproject.toml.

The extension is one shared library holding AVX-512, AVX2 and portable scalar code paths (per-function
target attributes, run-time dispatch), so it is built with the compiler's default flags and runs on any
x86-64 (scalar only elsewhere). OpenMP is used when the compiler accepts -fopenmp; at run time the library
then shares the libgomp that torch has already loaded (same soname), so the two never oversubscribe cores.
"""
import os
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _compiler_accepts(compiler, flag):
    """True when `compiler` compiles and links a trivial OpenMP program with `flag`."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 0; }\n")
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=[flag])
            compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=[flag])
        except Exception:
            return False
    return True


class BuildExtWithOptionalOpenMP(build_ext):
    """Adds -O3 and (when supported) -fopenmp; MSVC gets /O2 /openmp."""

    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        openmp = "/openmp" if msvc else "-fopenmp"
        use_openmp = os.environ.get("FA_LIB_NO_OPENMP") != "1" and _compiler_accepts(self.compiler, openmp)
        for ext in self.extensions:
            ext.extra_compile_args = (["/O2"] if msvc else ["-O3", "-std=c11"]) + ([openmp] if use_openmp else [])
            ext.extra_link_args = [openmp] if use_openmp and not msvc else []
        if not use_openmp:
            print("fa_lib: building the binary-conv kernels without OpenMP (single-threaded)", file=sys.stderr)
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "fa_lib.kernels._xnor",
            sources=["fa_lib/kernels/xnor.c", "fa_lib/kernels/xnor_amx.c", "fa_lib/kernels/_xnor_module.c"],
            depends=["fa_lib/kernels/xnor.h", "fa_lib/kernels/xnor_internal.h"],
        )
    ],
    cmdclass={"build_ext": BuildExtWithOptionalOpenMP},
)
