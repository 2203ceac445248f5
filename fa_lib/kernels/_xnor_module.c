/* Python module shell for the binary-convolution library.
 *
 * The kernels are plain C functions (xnor.h) called through ctypes by fa_lib/kernels/xnor.py; this file
 * only makes the shared library a regular extension module, so setuptools builds and installs it with
 * `pip install -e .` and `import fa_lib.kernels._xnor` locates it.  It does not use torch's C++ ABI.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "xnor.h"

static PyModuleDef xnor_module = {
    PyModuleDef_HEAD_INIT, "_xnor",
    "Bit-packed binary convolution kernels (ctypes entry points fa_pack_activations, fa_binary_conv).", -1, NULL,
};

PyMODINIT_FUNC PyInit__xnor(void) { return PyModule_Create(&xnor_module); }
