#!/usr/bin/env python3
"""Checks the library's module graph (README "Architecture"): no module of the
library imports the command line (`src/cli/`, `src/main.rs`), and no two modules
import each other, directly or through others, at file level or at top level.

A module is a file under src/ (`foo/mod.rs` is `foo`). An edge is a `crate::` or
`super::` path outside comments and `#[cfg(test)]` code (doc links do not count).
A parent module's own re-exports of its children are not edges. Exit status 1
lists every cycle. `make lint` runs it.
"""

import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "src"


def modules(root):
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            found["::".join(parts)] = path
    return found


def code_of(path):
    text = open(path, encoding="utf-8").read()
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    return "\n".join(line for line in text.split("\n") if not line.strip().startswith("//"))


def resolve(path, names):
    segments = path.split("::")
    for k in range(len(segments), 0, -1):
        candidate = "::".join(segments[:k])
        if candidate in names:
            return candidate
    return None


def edges_of(found):
    names = set(found)
    edges = {m: set() for m in found}
    for module, path in found.items():
        code = code_of(path)
        here = module.split("::") if module else []
        targets = []
        for m in re.finditer(r"\b(crate|super)((?:::\w+)+)", code):
            rest = m.group(2)[2:]
            if m.group(1) == "crate":
                targets.append(rest)
            else:
                targets.append("::".join(here[:-1] + [rest]))
        for m in re.finditer(r"use crate::\{([^;]*)\};", code, re.S):
            for item in re.split(r",\s*", m.group(1)):
                targets.append(item.strip().split("::{")[0])
        for target in targets:
            resolved = resolve(target, names)
            if resolved and resolved != module and not resolved.startswith(module + "::"):
                edges[module].add(resolved)
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def main():
    found = modules(ROOT)
    edges = edges_of(found)
    problems = []
    for module, targets in sorted(edges.items()):
        if module.startswith("cli") or module in ("main", ""):
            continue
        for target in sorted(targets):
            if target.startswith("cli"):
                problems.append(f"library module {module} imports the command line ({target})")
    for component in cycles(edges):
        problems.append("import cycle between files: " + ", ".join(component))
    top = {}
    for module, targets in edges.items():
        a = module.split("::")[0]
        top.setdefault(a, set()).update(t.split("::")[0] for t in targets if t.split("::")[0] != a)
    for component in cycles(top):
        problems.append("import cycle between top-level modules: " + ", ".join(component))
    for p in problems:
        print(p)
    print(f"{len(found)} modules, {sum(len(t) for t in edges.values())} imports, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
