"""What installing adamw_course adds beyond torch and torchvision. Run it with the python of an environment where the
wheel is installed (tools/check_wheel.sh does, in its fresh venv):

    python tools/install_closure.py                          # a table: package, version, MB on disk; then the totals
    python tools/install_closure.py --summary                # the totals as one line
    python tools/install_closure.py --max-packages 20 --max-mb 60   # exit 1, saying why, when over either budget

The closure is read from the installed distributions' metadata (importlib.metadata): every distribution reachable from
adamw_course's requirements (environment markers evaluated; adamw_course's own extras such as [dev] not followed;
extras that a requirement names, like `foo[bar]`, followed as pip installs them), minus every distribution reachable
from torch and torchvision. A package both need counts as torch's. Sizes are the byte counts in each distribution's
RECORD (a file's own size on disk where RECORD gives none); 1 MB = 1,000,000 bytes."""
import argparse, os, re, sys
from importlib import metadata

try: from packaging.requirements import Requirement
except ImportError: from pip._vendor.packaging.requirements import Requirement  # a bare venv has pip's copy

def norm(name: str) -> str:
    "`name` normalized as PEP 503 does, so that `Foo_Bar` and `foo-bar` are one package"
    return re.sub(r'[-_.]+', '-', name).lower()

def _dist(name: str):
    "The installed distribution `name` (the one first on sys.path), or None"
    try: return metadata.distribution(name)
    except metadata.PackageNotFoundError: return None

def _needs(req: Requirement, extras: set) -> bool:
    "Does `req` apply here, for a distribution installed with `extras`?"
    if req.marker is None: return True
    return any(req.marker.evaluate({'extra': e}) for e in (extras or {''}))

def reachable(roots: list[str], missing: set | None = None) -> dict:
    "Installed distributions reachable from `roots`, as {normalized name: distribution}; names required but not installed go to `missing`"
    found, done, todo = {}, {}, [(r, set()) for r in roots]   # done: name -> extras already followed
    while todo:
        name, extras = todo.pop()
        key = norm(name)
        if key in done and extras <= done[key]: continue
        dist = found.get(key) or _dist(name)
        if dist is None:
            if missing is not None: missing.add(key)
            continue
        found[key] = dist
        new, first = extras - done.get(key, set()), key not in done
        done.setdefault(key, set()).update(extras)
        for line in dist.requires or []:
            req = Requirement(line)
            if (first and _needs(req, set())) or any(_needs(req, {e}) for e in new if req.marker is not None):
                todo.append((req.name, set(req.extras)))
    return found

def size_bytes(dist) -> int:
    "Bytes on disk of the files `dist` installed, from its RECORD"
    total = 0
    for f in dist.files or []:
        if f.size is not None: total += f.size
        else:
            try: total += os.stat(dist.locate_file(f)).st_size
            except OSError: pass
    return total

def closure(root: str = 'adamw_course', base: tuple = ('torch', 'torchvision')) -> tuple[list, set]:
    "Rows (name, version, bytes) of what `root` pulls in beyond everything reachable from `base`, largest first; and missing names"
    if _dist(root) is None: sys.exit(f"{root} is not installed in {sys.prefix}: install its wheel there first, then run this with that python.")
    missing = set()
    mine, theirs = reachable([root], missing), reachable(list(base))
    extra = [d for k, d in mine.items() if k not in theirs and k != norm(root)]
    rows = [(d.metadata['Name'], d.version, size_bytes(d)) for d in extra]
    return sorted(rows, key=lambda r: (-r[2], norm(r[0]))), missing

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--root', default='adamw_course', help='the distribution to measure (default: adamw_course)')
    p.add_argument('--base', nargs='+', default=['torch', 'torchvision'], help='what the user is assumed to have already')
    p.add_argument('--summary', action='store_true', help='print the totals as one line instead of the table')
    p.add_argument('--max-packages', type=int, help='exit 1 if the closure has more packages than this')
    p.add_argument('--max-mb', type=float, help='exit 1 if the closure is larger than this many MB')
    a = p.parse_args(argv)
    rows, missing = closure(a.root, tuple(a.base))
    n, mb = len(rows), sum(r[2] for r in rows) / 1e6
    beyond = ' and '.join(a.base) if len(a.base) < 3 else ', '.join(a.base[:-1]) + ' and ' + a.base[-1]
    summary = f'{a.root} install closure beyond {beyond}: {n} packages, {mb:.1f} MB'
    if a.summary: print(summary + (f" ({', '.join(r[0] for r in rows)})" if rows else ''))
    else:
        w = max([len('package'), *(len(r[0]) for r in rows)])
        v = max([len('version'), *(len(r[1]) for r in rows)])
        print(f"{'package':<{w}}  {'version':<{v}}  {'MB':>7}")
        for name, ver, b in rows: print(f'{name:<{w}}  {ver:<{v}}  {b / 1e6:7.2f}')
        print(f"{'total: ' + str(n) + ' packages':<{w + v + 2}}  {mb:7.2f}")
    if missing: print(f"warning: required but not installed (not counted): {', '.join(sorted(missing))}", file=sys.stderr)
    over = []
    if a.max_packages is not None and n > a.max_packages: over.append(f'{n} packages > {a.max_packages}')
    if a.max_mb is not None and mb > a.max_mb: over.append(f'{mb:.1f} MB > {a.max_mb:g} MB')
    if over:
        print(f"{a.root}'s install closure is over budget ({'; '.join(over)}): a new dependency pulls in too much; "
              f"see the table from `python tools/install_closure.py`.", file=sys.stderr)
        return 1
    return 0

if __name__ == '__main__': sys.exit(main())
