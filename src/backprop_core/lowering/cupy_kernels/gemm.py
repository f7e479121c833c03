"""A row-major product ``C = A @ B`` of strided 2-D arrays as one column-major BLAS call.

cuBLAS reads matrices column by column, with a leading dimension; the arrays
here are row-major buffers, views of them (``A1.T``, a chunk ``X[:, a:b]``) and
vectors of ones.  A strided matrix is a column-major one when its rows are
adjacent, and the transpose of one when its columns are: :func:`blas_call`
works out which, so that no operand is ever copied, and which of A and B goes
first (cuBLAS writes C column-major; a row-major C is computed as
``C^T = B^T A^T``).  :func:`emulate` carries out such a call with NumPy on the
same memory, which is how the arguments are checked without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from numpy.lib.stride_tricks import as_strided

from ...errors import InvalidInputError

#: cuBLAS takes 32-bit sizes and leading dimensions.
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class BlasCall:
    """``gemm(transa, transb, m, n, k, first, lda, second, ldb, C, ldc)`` in cuBLAS's terms.

    ``first`` and ``second`` say which operand ("A" or "B") each matrix argument is.
    """

    transa: bool
    transb: bool
    m: int
    n: int
    k: int
    first: str
    lda: int
    second: str
    ldb: int
    ldc: int


def _column_major(shape, strides):
    """``(transposed, ld)``: the matrix is ``op(S)`` for a column-major S with leading
    dimension ld (op the transpose when ``transposed``); None when its memory is neither."""
    a, b = shape
    s0, s1 = strides
    if (s0 == 1 or a == 1) and (b == 1 or s1 >= max(1, a)):
        return False, s1 if b > 1 else max(1, a)
    if (s1 == 1 or b == 1) and (a == 1 or s0 >= max(1, b)):
        return True, s0 if a > 1 else max(1, b)
    return None


def _layout(name, shape, strides):
    found = _column_major(shape, strides)
    if found is None:
        raise InvalidInputError(f"{name} of shape {tuple(shape)} and strides {tuple(strides)} (elements) has "
                                "neither adjacent rows nor adjacent columns: cuBLAS cannot read it without a copy")
    return found


def blas_call(C, A, B) -> BlasCall:
    """The call computing ``C = A @ B``; each argument is ``(shape, strides in elements)``."""
    (r, k), (k2, q) = A[0], B[0]
    if k != k2 or tuple(C[0]) != (r, q):
        raise InvalidInputError(f"a product of shapes {A[0]} and {B[0]} cannot fill {C[0]}")
    if max(r, q, k) > INT32_MAX:
        raise InvalidInputError(f"a product of shapes {A[0]} and {B[0]} is beyond cuBLAS's 32-bit sizes")
    c_transposed, ldc = _layout("the product", *C)
    a_transposed, lda = _layout("the left operand", *A)
    b_transposed, ldb = _layout("the right operand", *B)
    if not c_transposed:  # C is column-major: C = op(A) op(B)
        return BlasCall(a_transposed, b_transposed, r, q, k, "A", lda, "B", ldb, ldc)
    # C's transpose is column-major: C^T = B^T A^T, each transpose flipping its operand's op
    return BlasCall(not b_transposed, not a_transposed, q, r, k, "B", ldb, "A", lda, ldc)


def layout_of(a) -> tuple:
    """``(shape, strides in elements)`` of a NumPy or CuPy array."""
    return tuple(a.shape), tuple(s // a.itemsize for s in a.strides)


def emulate(call: BlasCall, C, A, B) -> None:
    """Carry out ``call`` on NumPy arrays as cuBLAS would: reading and writing raw memory
    through the call's leading dimensions, from each array's first element."""
    operands = {"A": A, "B": B}

    def matrix(a, transposed, ld, rows, cols):
        stored = (cols, rows) if transposed else (rows, cols)
        S = as_strided(a, shape=stored, strides=(a.itemsize, ld * a.itemsize), writeable=False)
        return S.T if transposed else S

    left = matrix(operands[call.first], call.transa, call.lda, call.m, call.k)
    right = matrix(operands[call.second], call.transb, call.ldb, call.k, call.n)
    out = as_strided(C, shape=(call.m, call.n), strides=(C.itemsize, call.ldc * C.itemsize))
    out[...] = left @ right
