"""PostgreSQL access, for every part that keeps data in it (text-to-SQL's datasets, the prefix
index, named states).

- `server.py`: the server (the one at `DATABASE_URL`, or an embedded one in the data folder):
  start, stop, ping, connect, each database's URL;
- `urls.py`: its URLs, passwords masked whenever shown, and one-line reasons for its errors;
- `roles.py`: each database's read-only role and its password file.
"""
