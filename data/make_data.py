"""Regenerate the data files in data/ from the PyPI wheels that ship them.

Writes, byte for byte reproducibly:

- ``co2.csv``: Mauna Loa weekly CO2 from statsmodels' ``co2`` dataset, header
  ``date,co2``, ISO dates, one row per week, missing weeks kept with an empty
  ``co2`` field.
- ``sunspots.csv``: yearly sunspot numbers from statsmodels' ``sunspots`` dataset,
  header ``date,sunspots``, the year written as ``YYYY-01-01``, values unchanged.
- ``nile.csv``, ``elnino.csv``, ``unemployment.csv``: statsmodels' ``nile``
  (yearly flow, ``date,flow``, the year as ``YYYY-01-01``), ``elnino`` (monthly
  sea surface temperature, its year-by-month table as ``date,temperature``, one
  row a month, ``YYYY-MM-01``) and the ``unemp`` column of ``macrodata``
  (quarterly US unemployment rate, ``date,unemployment``, each quarter's first
  day); values copied as text.
- ``airline.csv``: the monthly international airline passengers 1949-1960 (Box
  and Jenkins' series G) from statsforecast's ``AirPassengers`` array, header
  ``date,passengers``, ``YYYY-MM-01``, values as whole numbers.
- ``digits.csv.gz``: scikit-learn's copy of the UCI optdigits test set, copied
  byte for byte (1797 rows of 64 pixels 0..16 and the label, no header).
- ``words.csv``: the 20000 most frequent English words of wordfreq's ``large_en``
  list made only of the letters a-z (length 1..20), header ``word,frequency``,
  descending frequency (ties in the list's own, alphabetical, order), the
  frequency written with 6 significant digits (``format(f, ".6g")``).

How to run it (nothing here is a dependency of rnnbptt)::

    mkdir -p /tmp/wheels
    pip download --no-deps -d /tmp/wheels statsmodels==0.15.0 scikit-learn==1.9.1 \\
        wordfreq==3.1.1 statsforecast==2.1.1
    python3 -m venv /tmp/dataenv && /tmp/dataenv/bin/pip install msgpack==1.2.4
    /tmp/dataenv/bin/python data/make_data.py /tmp/wheels

statsmodels, scikit-learn and statsforecast ship platform wheels; the ones below are
the CPython 3.11 manylinux x86_64 wheels. The script checks each wheel's sha256 and,
at the end, the sha256 of every file it wrote. With ``--any-wheel`` it takes any
wheel of the same project found in the directory (another platform or version) and
only reports whether the outputs differ from the recorded ones.

Only the standard library and ``msgpack`` (to read wordfreq's cBpack files) are
used.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import hashlib
import io
import re
import sys
import zipfile
from datetime import date
from pathlib import Path

# The exact wheels used for the committed files: file name -> sha256.
WHEELS = {
    "statsmodels": (
        "statsmodels-0.15.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "b67886b66d9c7ca118526accedb5c6de7ffd74c015dc0492ea0b1690192b65da",
    ),
    "scikit_learn": (
        "scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df",
    ),
    "statsforecast": (
        "statsforecast-2.1.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "dbe3e3e1035fdce505566e2ffd088c7cb72fcc4d87d6f6f07ec2a5eecee9d8fa",
    ),
    "wordfreq": (
        "wordfreq-3.1.1-py3-none-any.whl",
        "4b1c6ecffc6198be3396d5cf871c4423ca71c907c231348d352dd54d62b97473",
    ),
}

# The files this script writes, with the sha256 of the committed versions.
OUTPUTS = {
    "co2.csv": "2737f74222cf1fb702d41058927d2b8d2a34778d519bfa6b1dea2f1b47c234f4",
    "sunspots.csv": "d4247ad3e98943cdea9093d577b97e689f509af945c86bc5bf3a41f4d6af1171",
    "nile.csv": "5c05ec68741a098603f391a9a42cdf5cddaf837c4b2ab0e2079eb2005a7d4994",
    "elnino.csv": "4378ee6b3b8bbaaf2987561446ac99a49a319c22d71d3c07712c6fe7c1dedd3a",
    "unemployment.csv": (
        "1799c4b2a6e5d6f32929cc515346a130032601fab408046b66267496aed5a08b"
    ),
    "airline.csv": "1e7bf30c0574d9a88a2bbd60c0528293f7a41c453b6da220669b2894f7114e65",
    "digits.csv.gz": "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
    "words.csv": "f2ffff66ac676e2148809785823fec792e98f7bc61a6e60c8fee85d154af6295",
}

CO2_MEMBER = "statsmodels/datasets/co2/co2.csv"
NILE_MEMBER = "statsmodels/datasets/nile/nile.csv"
ELNINO_MEMBER = "statsmodels/datasets/elnino/elnino.csv"
MACRO_MEMBER = "statsmodels/datasets/macrodata/macrodata.csv"
AIRLINE_MEMBER = "statsforecast/utils.py"
SUNSPOTS_MEMBER = "statsmodels/datasets/sunspots/sunspots.csv"
DIGITS_MEMBER = "sklearn/datasets/data/digits.csv.gz"
WORDS_MEMBER = "wordfreq/data/large_en.msgpack.gz"

N_WORDS = 20000
WORD_RE = re.compile(r"[a-z]{1,20}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_wheel(wheel_dir: Path, project: str, any_wheel: bool) -> Path:
    name, digest = WHEELS[project]
    path = wheel_dir / name
    if path.is_file():
        got = sha256(path.read_bytes())
        if got != digest:
            sys.exit(f"{path}: sha256 {got}, expected {digest}")
        return path
    if not any_wheel:
        sys.exit(f"{path} not found (pass --any-wheel to use another wheel)")
    others = sorted(wheel_dir.glob(f"{project}-*.whl"))
    if not others:
        sys.exit(f"no {project}-*.whl in {wheel_dir}")
    print(f"warning: using {others[-1].name}, not the recorded {name}")
    return others[-1]


def read_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(member)


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def make_co2(raw: bytes) -> bytes:
    rows = csv_rows(raw)
    if rows[0] != ["date", "co2"]:
        raise ValueError(f"unexpected co2 header {rows[0]}")
    out = ["date,co2"]
    previous = None
    for yyyymmdd, value in rows[1:]:
        if not re.fullmatch(r"[0-9]{8}", yyyymmdd):
            raise ValueError(f"co2: bad date {yyyymmdd!r}")
        day = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
        if previous and (day - previous).days != 7:
            raise ValueError(f"co2: {yyyymmdd} is not one week after {previous}")
        if value:
            float(value)  # a number, written as in the original
        out.append(f"{day.isoformat()},{value}")
        previous = day
    return ("\n".join(out) + "\n").encode("utf-8")


def make_sunspots(raw: bytes) -> bytes:
    rows = csv_rows(raw)
    if rows[0] != ["YEAR", "SUNACTIVITY"]:
        raise ValueError(f"unexpected sunspots header {rows[0]}")
    out = ["date,sunspots"]
    for year_text, value in rows[1:]:
        year = float(year_text)
        if year != int(year):
            raise ValueError(f"sunspots: year {year_text} is not whole")
        float(value)  # a number, written as in the original
        out.append(f"{int(year):04d}-01-01,{value}")
    return ("\n".join(out) + "\n").encode("utf-8")


def make_nile(raw: bytes) -> bytes:
    rows = csv_rows(raw)
    if rows[0] != ["year", "volume"]:
        raise ValueError(f"unexpected nile header {rows[0]}")
    out = ["date,flow"]
    for year, (year_text, value) in enumerate(rows[1:], start=1871):
        if int(year_text) != year:
            raise ValueError(f"nile: year {year_text}, expected {year}")
        float(value)
        out.append(f"{year:04d}-01-01,{value}")
    return ("\n".join(out) + "\n").encode("utf-8")


def make_elnino(raw: bytes) -> bytes:
    rows = csv_rows(raw)
    if len(rows[0]) != 13 or rows[0][0] != "YEAR":
        raise ValueError(f"unexpected elnino header {rows[0]}")
    out = ["date,temperature"]
    for year, row in enumerate(rows[1:], start=1950):
        if int(float(row[0])) != year or len(row) != 13:
            raise ValueError(f"elnino: bad row {row}")
        for month, value in enumerate(row[1:], start=1):
            float(value)
            out.append(f"{year:04d}-{month:02d}-01,{value}")
    return ("\n".join(out) + "\n").encode("utf-8")


def make_unemployment(raw: bytes) -> bytes:
    rows = csv_rows(raw)
    column = rows[0].index("unemp")
    out, previous = ["date,unemployment"], None
    for row in rows[1:]:
        year, quarter = int(float(row[0])), int(float(row[1]))
        step = year * 4 + quarter - 1
        if previous is not None and step != previous + 1:
            raise ValueError(f"macrodata: {year}Q{quarter} does not follow")
        float(row[column])
        out.append(f"{year:04d}-{3 * quarter - 2:02d}-01,{row[column]}")
        previous = step
    return ("\n".join(out) + "\n").encode("utf-8")


def make_airline(source: bytes) -> bytes:
    """statsforecast/utils.py's ``AirPassengers = np.array([...])``, read as a
    literal (the module is not imported)."""
    text = source.decode("utf-8")
    start = text.index("AirPassengers = np.array(")
    opening = text.index("[", start)
    values = ast.literal_eval(text[opening : text.index("]", opening) + 1])
    if len(values) != 144 or not all(float(v).is_integer() for v in values):
        raise ValueError(f"airline: {len(values)} values, expected 144 whole numbers")
    out = ["date,passengers"]
    for i, value in enumerate(values):
        out.append(f"{1949 + i // 12:04d}-{i % 12 + 1:02d}-01,{int(value)}")
    return ("\n".join(out) + "\n").encode("utf-8")


def check_digits(raw: bytes) -> bytes:
    lines = gzip.decompress(raw).decode("ascii").splitlines()
    if len(lines) != 1797:
        raise ValueError(f"digits: {len(lines)} rows, expected 1797")
    for line in lines:
        values = [int(float(v)) for v in line.split(",")]
        if len(values) != 65 or not all(0 <= v <= 16 for v in values[:64]):
            raise ValueError(f"digits: bad row {line!r}")
        if not 0 <= values[64] <= 9:
            raise ValueError(f"digits: bad label in {line!r}")
    return raw


def make_words(raw: bytes) -> bytes:
    import msgpack  # the only package outside the standard library

    # cBpack, as read by wordfreq.read_cBpack: a msgpack list, the header first,
    # then buckets of words in alphabetical order. wordfreq.get_frequency_dict
    # gives the words of bucket `index` of the list WITHOUT the header (so element
    # index + 1 of the whole list) the frequency cB_to_freq(-index), that is
    # 10 ** (-index / 100).
    pack = msgpack.unpackb(gzip.decompress(raw), raw=False)
    header, buckets = pack[0], pack[1:]
    if header != {"format": "cB", "version": 1}:
        raise ValueError(f"unexpected cBpack header {header!r}")
    out = ["word,frequency"]
    for index, bucket in enumerate(buckets):
        frequency = 10 ** (-index / 100)
        for word in bucket:
            if WORD_RE.fullmatch(word):
                out.append(f"{word},{frequency:.6g}")
                if len(out) == N_WORDS + 1:
                    return ("\n".join(out) + "\n").encode("utf-8")
    raise ValueError(f"fewer than {N_WORDS} words")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel_dir", type=Path, help="folder with the wheels")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="where to write the files (default: this script's folder)",
    )
    parser.add_argument(
        "--any-wheel",
        action="store_true",
        help="accept wheels other than the recorded ones",
    )
    args = parser.parse_args(argv)

    statsmodels = find_wheel(args.wheel_dir, "statsmodels", args.any_wheel)
    sklearn = find_wheel(args.wheel_dir, "scikit_learn", args.any_wheel)
    wordfreq = find_wheel(args.wheel_dir, "wordfreq", args.any_wheel)
    statsforecast = find_wheel(args.wheel_dir, "statsforecast", args.any_wheel)

    files = {
        "co2.csv": make_co2(read_member(statsmodels, CO2_MEMBER)),
        "sunspots.csv": make_sunspots(read_member(statsmodels, SUNSPOTS_MEMBER)),
        "nile.csv": make_nile(read_member(statsmodels, NILE_MEMBER)),
        "elnino.csv": make_elnino(read_member(statsmodels, ELNINO_MEMBER)),
        "unemployment.csv": make_unemployment(read_member(statsmodels, MACRO_MEMBER)),
        "airline.csv": make_airline(read_member(statsforecast, AIRLINE_MEMBER)),
        "digits.csv.gz": check_digits(read_member(sklearn, DIGITS_MEMBER)),
        "words.csv": make_words(read_member(wordfreq, WORDS_MEMBER)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    differ = 0
    for name, data in files.items():
        (args.out / name).write_bytes(data)
        digest = sha256(data)
        same = digest == OUTPUTS[name]
        differ += not same
        text = gzip.decompress(data) if name.endswith(".gz") else data
        lines = text.count(b"\n")
        note = "" if same else " (differs from the recorded sha256)"
        print(f"{name}: {lines} lines, sha256 {digest}{note}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
