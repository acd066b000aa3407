"""The package's shape: the modules' imports form no cycle (counting the imports inside functions, which the Learner's
`lr_find`, `fit_sched`, `fit_one_cycle`, `save` and `load` use), and no module patches a class of another module.

Both are read from the source with `ast`, so a lazy import or a `@patch` anywhere in a module counts."""
import ast
from pathlib import Path

import adamw_course

PKG = Path(adamw_course.__file__).parent
MODULES = {p.stem: ast.parse(p.read_text()) for p in PKG.glob('*.py') if not p.stem.startswith('_')}


def imported_modules(name: str, tree: ast.Module) -> set[str]:
    "The package modules that module `name` imports, at the top or inside a function."
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1: base = node.module or ''
            elif node.module and node.module.startswith('adamw_course'): base = node.module[len('adamw_course'):].lstrip('.')
            else: continue
            if base: out.add(base.split('.')[0])
            else: out.update(a.name for a in node.names if a.name in MODULES)   # `from . import x`
        elif isinstance(node, ast.Import):
            out.update(a.name.split('.')[1] for a in node.names if a.name.startswith('adamw_course.'))
    return (out & set(MODULES)) - {name}


GRAPH = {name: imported_modules(name, tree) for name, tree in MODULES.items()}


def find_cycle(graph: dict) -> list | None:
    "A cycle in `graph` (module -> imported modules) as a list of names, or None."
    state, stack = {}, []
    def visit(n):
        state[n] = 'open'; stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 'open': return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)): return c
        state[n] = 'done'; stack.pop()
    for n in sorted(graph):
        if n not in state and (c := visit(n)): return c


def test_the_graph_is_read():
    "Guard: the parser sees the edges we know exist, lazy ones included."
    assert 'callback' in GRAPH['learner'] and 'optim_base' in GRAPH['callback']
    assert {'lr_finder', 'schedule', 'checkpoint'} <= GRAPH['learner']          # imported inside methods
    assert 'learner' in GRAPH['experiments']


def test_find_cycle_finds_one():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, f"import cycle: {' -> '.join(find_cycle(GRAPH))}"


def patched_classes(tree: ast.Module) -> set[str]:
    "The classes a module extends with fastcore's `@patch` (read from the first argument's annotation)."
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(
                (isinstance(d, ast.Name) and d.id == 'patch') or (isinstance(d, ast.Attribute) and d.attr == 'patch')
                for d in node.decorator_list):
            ann = node.args.args[0].annotation if node.args.args else None
            out.add(ast.unparse(ann) if ann is not None else '?')
    return out


def test_patch_reader_works():
    tree = ast.parse("from fastcore.basics import patch\n@patch\ndef f(self: Other): pass")
    assert patched_classes(tree) == {'Other'}


def test_no_module_patches_another_modules_class():
    for name, tree in MODULES.items():
        own = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
        foreign = patched_classes(tree) - own
        assert not foreign, f"adamw_course.{name} patches {sorted(foreign)}, a class of another module"


def test_learner_is_whole_on_its_own():
    "Importing the learner module alone gives every method (none is added by importing another module)."
    import subprocess, sys
    code = ("import adamw_course.learner as l, sys; "
            "assert all(m in vars(l.Learner) for m in ('lr_find', 'fit_sched', 'fit_one_cycle', 'save', 'load', 'get_preds', 'tta')); "
            "assert 'adamw_course.lr_finder' not in sys.modules and 'adamw_course.schedule' not in sys.modules")
    subprocess.run([sys.executable, '-c', code], check=True)
