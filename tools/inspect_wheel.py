"""Look inside a built wheel: it must hold the package's modules and metadata only (no notebooks, no data, no
tests) and stay small. Prints its size and contents summary; exits 1 on a problem."""
import sys, zipfile
from pathlib import Path

MAX_BYTES = 1_000_000

def problems(whl: Path) -> list[str]:
    "What is wrong with the wheel at `whl`"
    names, res = zipfile.ZipFile(whl).namelist(), []
    bad = [n for n in names if n.endswith(('.ipynb', '.tgz', '.tar.gz', '.jpg', '.png', '.pt', '.pth'))]
    if bad: res.append(f'it holds files that belong outside the package: {bad[:5]}')
    stray = [n for n in names if not n.startswith(('adamw_course/', 'adamw_course-'))]
    if stray: res.append(f'it holds files outside adamw_course/: {stray[:5]}')
    if whl.stat().st_size > MAX_BYTES: res.append(f'it is {whl.stat().st_size:,} bytes, over {MAX_BYTES:,}')
    return res

if __name__ == '__main__':
    whl = Path(sys.argv[1])
    names = zipfile.ZipFile(whl).namelist()
    mods = sorted(n for n in names if n.endswith('.py'))
    print(f'{whl.name}: {whl.stat().st_size:,} bytes, {len(names)} files, modules: {", ".join(Path(m).stem for m in mods)}')
    if (p := problems(whl)):
        print('\n'.join(p)); sys.exit(1)
