#!/usr/bin/env python3
"""Runs the README example and checks the loss and gradients it prints against an independent
reference computed here in plain Python from the x and w it prints:
  y = x @ w,  loss = sum(silu(y)),  g = silu'(y) = s(y) * (1 + y * (1 - s(y))),  s = sigmoid,
  dloss/dx = g @ w^T,  dloss/dw = x^T @ g.
Usage: check_readme_example.py PATH_TO_readme_example"""
import math
import re
import subprocess
import sys

# Tensors print with 4 decimals, so a correct value may differ from the reference by up to 5e-5.
PRINT_TOLERANCE = 1e-4


def parse_tensor(text, name):
    """The rows of the 2-D tensor printed as `name = tensor([[...], [...]], dtype=...)`."""
    match = re.search(re.escape(name) + r" = tensor\((\[.*?\]\])", text, re.S)
    if not match:
        sys.exit(f"FAIL: no '{name} = tensor(...)' in the output:\n{text}")
    rows = re.findall(r"\[([^\[\]]*)\]", match.group(1))
    return [[float(v) for v in row.split(",")] for row in rows]


def matmul(a, b):
    return [[sum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]


def transpose(a):
    return [list(col) for col in zip(*a)]


def main():
    out = subprocess.run([sys.argv[1]], check=True, capture_output=True, text=True).stdout
    x, w = parse_tensor(out, "x"), parse_tensor(out, "w")
    y = matmul(x, w)
    sig = [[1 / (1 + math.exp(-v)) for v in row] for row in y]
    loss = sum(v * s for row_y, row_s in zip(y, sig) for v, s in zip(row_y, row_s))
    g = [[s * (1 + v * (1 - s)) for v, s in zip(row_y, row_s)] for row_y, row_s in zip(y, sig)]
    expected = {"x.grad": matmul(g, transpose(w)), "w.grad": matmul(transpose(x), g)}

    failures = []
    printed_loss = re.search(r"loss = (\S+)", out)
    # The loss prints with std::cout's default 6 significant digits.
    if not printed_loss or abs(float(printed_loss.group(1)) - loss) > 1e-5 * max(1.0, abs(loss)):
        failures.append(f"loss: printed {printed_loss.group(1) if printed_loss else None}, expected {loss:.6g}")
    for name, want in expected.items():
        got = parse_tensor(out, name)
        for i, (got_row, want_row) in enumerate(zip(got, want)):
            for j, (a, b) in enumerate(zip(got_row, want_row)):
                if abs(a - b) > PRINT_TOLERANCE:
                    failures.append(f"{name}[{i}][{j}]: printed {a}, expected {b:.6f}")
        if len(got) != len(want) or any(len(r) != len(s) for r, s in zip(got, want)):
            failures.append(f"{name}: printed shape differs from the expected {len(want)}x{len(want[0])}")
    if failures:
        sys.exit("FAIL:\n  " + "\n  ".join(failures) + "\noutput was:\n" + out)
    print(out + "readme example gradients match the reference")


if __name__ == "__main__":
    main()
