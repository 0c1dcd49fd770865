"""ctest oracle_generate: make_models.py then peft_reference.py into --out.

Skips the work when --out already holds data made by the same scripts with the same library
versions (a stamp records both), so incremental test runs cost seconds.
"""
import argparse
import glob
import hashlib
import importlib.metadata
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))


def fingerprint() -> str:
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(HERE, "*.py"))):
        if os.path.basename(path) in ("common.py", "make_models.py", "peft_reference.py", "generate.py"):
            with open(path, "rb") as f:
                h.update(os.path.basename(path).encode() + b"\0" + f.read())
    for package in ("torch", "transformers", "peft", "safetensors", "numpy"):
        h.update(f"{package}={importlib.metadata.version(package)}\n".encode())
    return h.hexdigest()


def main(out: str) -> None:
    stamp_path = os.path.join(out, "stamp")
    stamp = fingerprint()
    if os.path.exists(stamp_path) and open(stamp_path).read().strip() == stamp:
        print(f"oracle data in {out} is up to date")
        return
    import make_models
    import peft_reference

    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    make_models.main(out)
    peft_reference.main(out)
    with open(stamp_path, "w") as f:
        f.write(stamp + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    main(parser.parse_args().out)
