"""The batch engine's side of eddy-bench's replay workload: DuckDB counts the 7th
space-separated field of every line of a file, as `split_part(line, ' ', 7)`.

    python3 bench/duckdb_count.py FILE OUT THREADS

Writes `COUNT URL` lines to OUT (the form of `uniq -c`, so the bench checks both the same way)
and prints the seconds the query took (from the SQL's start to its last row, the file read
included; the interpreter's start and the import are not counted).
"""

import sys
import time

try:
    import duckdb
except ImportError:
    sys.exit("the replay bench needs DuckDB's Python package: pip install duckdb (bench/run-all installs it)")

path, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
start = time.perf_counter()
rows = con.execute(
    "SELECT split_part(line, ' ', 7) AS url, count(*) AS n "
    "FROM read_csv(?, columns = {'line': 'VARCHAR'}, delim = '\x01', header = false, "
    "quote = '', escape = '', auto_detect = false) GROUP BY url",
    [path],
).fetchall()
elapsed = time.perf_counter() - start
with open(out, "w") as f:
    for url, n in rows:
        f.write(f"{n} {url}\n")
print(f"{elapsed:.6f}")
