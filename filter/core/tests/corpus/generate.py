#!/usr/bin/env python3
"""Writes the generated half of the token-accuracy corpus (the other half is hand-written).

Deterministic: a fixed seed, no network, standard library only. Re-running it rewrites the same
bytes, so the committed files and the numbers in docs/tokens.md stay reproducible:

    python3 filter/core/tests/corpus/generate.py

Everything here imitates what MCP tools return: API JSON (compact and pretty, with and without
\\u escapes), tools/list responses, logs, CSV query results, base64 blobs, hex, JWTs.
"""

import base64
import hashlib
import json
import os
import random
import uuid

ROOT = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20240611)

FIRST = ["Alice", "Bilal", "Chen", "Dana", "Emeka", "Freya", "Gustavo", "Hana", "Ivan", "Jasmine",
         "Kofi", "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tomás",
         "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoë"]
LAST = ["Anderson", "Becker", "Castillo", "Dubois", "Eriksen", "Fischer", "García", "Haddad",
        "Ishikawa", "Johansson", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov",
        "Quinn", "Rossi", "Schmidt", "Tanaka", "Usman", "Volkov", "Wójcik", "Xu", "Yilmaz", "Zhang"]
CITIES = ["Lisbon", "Toronto", "Nairobi", "Osaka", "Kraków", "Austin", "Melbourne", "Bogotá",
          "Hamburg", "Lyon", "Pune", "Seoul", "Cape Town", "Montréal", "Edinburgh", "Tallinn"]
WORDS = ("request timeout cache user session token payment invoice order shipment retry "
         "queue worker database index migration schema build deploy cluster node pod "
         "container image volume secret config feature flag metric alert dashboard "
         "latency throughput error warning fallback upstream downstream gateway proxy").split()
SENTENCES = [
    "The export fails when the report contains more than ten thousand rows.",
    "Steps to reproduce: open the dashboard, select last 30 days, and click Export.",
    "Expected the CSV to download; instead the page shows a spinner forever.",
    "This started after upgrading to the latest release on Monday.",
    "I can reproduce it on Chrome and Firefox, but not on Safari.",
    "Logs show a 504 from the reporting service after exactly 60 seconds.",
    "A workaround is to narrow the date range and export in several parts.",
    "Could we stream the rows instead of building the whole file in memory?",
    "Thanks for the quick fix, confirmed working in the nightly build.",
    "Closing as duplicate; the discussion continues in the linked issue.",
    "The migration adds a non-null column without a default, which locks the table.",
    "We should document the new environment variable in the deployment guide.",
    "Memory usage grows by about 40 MB per hour until the worker is restarted.",
    "The retry policy doubles the delay each time, capped at five minutes.",
    "Please add a test that covers the empty-list case before merging.",
]


def name():
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def login(n):
    return (n.split()[0][0] + n.split()[1]).lower().replace("ó", "o").replace("ë", "e").replace("í", "i").replace("á", "a") + str(rng.randint(1, 99))


def ts(day_offset=0):
    return (f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z")


def hexid(n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def uid():
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def write(rel, text):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


# ---------------------------------------------------------------- json
def github_issues():
    issues = []
    for i in range(24):
        author = name()
        n = 4100 + i * 7
        body = " ".join(rng.sample(SENTENCES, rng.randint(2, 5)))
        if rng.random() < 0.4:
            body += "\n\n```\nError: connect ECONNREFUSED 10.0.%d.%d:5432\n    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)\n```" % (rng.randint(0, 9), rng.randint(2, 250))
        issues.append({
            "url": f"https://api.github.example/repos/acme/reporting/issues/{n}",
            "html_url": f"https://github.example/acme/reporting/issues/{n}",
            "id": rng.randint(1_000_000_000, 2_999_999_999),
            "node_id": "I_kwDO" + base64.b64encode(rng.randbytes(12)).decode().rstrip("="),
            "number": n,
            "title": rng.choice(["Export", "Dashboard", "Login", "Webhook", "Scheduler", "API"]) + ": " + rng.choice(SENTENCES).rstrip("."),
            "user": {"login": login(author), "id": rng.randint(10000, 9999999), "type": "User", "site_admin": False,
                     "avatar_url": f"https://avatars.github.example/u/{rng.randint(10000, 9999999)}?v=4"},
            "labels": [{"name": l, "color": hexid(6)} for l in rng.sample(["bug", "enhancement", "needs-triage", "performance", "docs", "good first issue", "regression"], rng.randint(0, 3))],
            "state": rng.choice(["open", "open", "closed"]),
            "locked": False,
            "assignee": None if rng.random() < 0.5 else {"login": login(name())},
            "comments": rng.randint(0, 40),
            "created_at": ts(),
            "updated_at": ts(),
            "closed_at": None,
            "author_association": rng.choice(["CONTRIBUTOR", "MEMBER", "NONE"]),
            "body": body,
            "reactions": {"total_count": rng.randint(0, 12), "+1": rng.randint(0, 9), "-1": 0, "heart": rng.randint(0, 3)},
        })
    write("json/github_issues.json", json.dumps(issues, indent=2, ensure_ascii=False) + "\n")


def tool(name_, description, props, required):
    return {"name": name_, "description": description,
            "inputSchema": {"type": "object", "properties": props, "required": required}}


def s(desc, **kw):
    d = {"type": "string", "description": desc}
    d.update(kw)
    return d


def tools_lists():
    fs = [
        tool("read_file", "Read the complete contents of a file from the file system. Handles various text encodings and provides detailed error messages if the file cannot be read. Use this tool when you need to examine the contents of a single file. Only works within allowed directories.", {"path": s("Absolute or relative path of the file to read.")}, ["path"]),
        tool("read_multiple_files", "Read the contents of multiple files simultaneously. This is more efficient than reading files one by one when you need to analyze or compare multiple files. Each file's content is returned with its path as a reference. Failed reads for individual files won't stop the entire operation.", {"paths": {"type": "array", "items": {"type": "string"}, "description": "Paths of the files to read."}}, ["paths"]),
        tool("write_file", "Create a new file or completely overwrite an existing file with new content. Use with caution as it will overwrite existing files without warning. Handles text content with proper encoding.", {"path": s("Path of the file to write."), "content": s("Full new content of the file.")}, ["path", "content"]),
        tool("edit_file", "Make line-based edits to a text file. Each edit replaces exact line sequences with new content. Returns a git-style diff showing the changes made.", {"path": s("File to edit."), "edits": {"type": "array", "items": {"type": "object", "properties": {"oldText": s("Text to search for - must match exactly"), "newText": s("Text to replace with")}, "required": ["oldText", "newText"], "additionalProperties": False}}, "dryRun": {"type": "boolean", "default": False, "description": "Preview changes using git-style diff format"}}, ["path", "edits"]),
        tool("list_directory", "Get a detailed listing of all files and directories in a specified path. Results clearly distinguish between files and directories with [FILE] and [DIR] prefixes.", {"path": s("Directory to list.")}, ["path"]),
        tool("search_files", "Recursively search for files and directories matching a pattern. Searches through all subdirectories from the starting path. The search is case-insensitive and matches partial names.", {"path": s("Where to start."), "pattern": s("Substring or glob to match."), "excludePatterns": {"type": "array", "items": {"type": "string"}, "default": []}}, ["path", "pattern"]),
        tool("get_file_info", "Retrieve detailed metadata about a file or directory: size, creation time, last modified time, permissions, and type.", {"path": s("Path to inspect.")}, ["path"]),
    ]
    gh = [
        tool("create_issue", "Create a new issue in a GitHub repository.", {"owner": s("Repository owner (user or organization)"), "repo": s("Repository name"), "title": s("Issue title"), "body": s("Issue body in Markdown"), "labels": {"type": "array", "items": {"type": "string"}, "description": "Labels to apply"}, "assignees": {"type": "array", "items": {"type": "string"}}}, ["owner", "repo", "title"]),
        tool("list_pull_requests", "List pull requests in a repository, newest first. Supports filtering by state, base branch and head.", {"owner": s("Repository owner"), "repo": s("Repository name"), "state": s("Filter by state", enum=["open", "closed", "all"], default="open"), "base": s("Filter by base branch name"), "per_page": {"type": "integer", "minimum": 1, "maximum": 100, "default": 30}, "page": {"type": "integer", "minimum": 1}}, ["owner", "repo"]),
        tool("get_file_contents", "Get the contents of a file or directory from a GitHub repository at a given ref (branch, tag or commit SHA).", {"owner": s("Repository owner"), "repo": s("Repository name"), "path": s("Path to file/directory"), "ref": s("Git ref; defaults to the default branch")}, ["owner", "repo", "path"]),
        tool("search_code", "Search for code across GitHub repositories using GitHub's code search syntax, e.g. 'repo:owner/name language:rust fn main'.", {"q": s("Search query"), "per_page": {"type": "integer", "maximum": 100}, "page": {"type": "integer"}}, ["q"]),
        tool("merge_pull_request", "Merge a pull request. Fails if the pull request is not mergeable or required checks have not passed.", {"owner": s("Repository owner"), "repo": s("Repository name"), "pull_number": {"type": "integer", "description": "Pull request number"}, "merge_method": s("Merge method", enum=["merge", "squash", "rebase"]), "commit_title": s("Title for the merge commit")}, ["owner", "repo", "pull_number"]),
    ]
    pg = [
        tool("query", "Run a read-only SQL query against the connected PostgreSQL database. The query runs inside a READ ONLY transaction with a 30 second statement timeout. Results are returned as JSON rows.", {"sql": s("The SQL query to execute")}, ["sql"]),
        tool("list_tables", "List tables in a schema with their estimated row counts and sizes.", {"schema": s("Schema name", default="public")}, []),
        tool("describe_table", "Show the columns, types, defaults, constraints and indexes of a table.", {"table": s("Table name, optionally schema-qualified")}, ["table"]),
    ]
    for fname, tools in (("tools_list_filesystem", fs), ("tools_list_github", gh), ("tools_list_postgres", pg)):
        msg = {"jsonrpc": "2.0", "id": rng.randint(1, 99), "result": {"tools": tools}}
        write(f"json/{fname}.json", json.dumps(msg, separators=(",", ":"), ensure_ascii=False))


def k8s_pods():
    items = []
    for i in range(10):
        app = rng.choice(["orders-api", "payments", "search-indexer", "web"])
        pod = f"{app}-{hexid(10)}-{hexid(5)}"
        items.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": "prod", "uid": uid(),
                         "labels": {"app.kubernetes.io/name": app, "pod-template-hash": hexid(10)},
                         "creationTimestamp": ts(),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": pod.rsplit("-", 1)[0], "uid": uid(), "controller": True}]},
            "spec": {"containers": [{"name": app, "image": f"registry.internal.example:5000/{app}:{hexid(12)}",
                                     "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                     "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
                                     "env": [{"name": "RUST_LOG", "value": "info"}, {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]}],
                     "nodeName": f"ip-10-0-{rng.randint(0, 255)}-{rng.randint(0, 255)}.eu-west-1.compute.internal"},
            "status": {"phase": rng.choice(["Running", "Running", "Running", "Pending"]), "podIP": f"10.244.{rng.randint(0, 255)}.{rng.randint(2, 254)}",
                       "containerStatuses": [{"name": app, "ready": True, "restartCount": rng.randint(0, 4), "imageID": "sha256:" + hexid(64)}]},
        })
    write("json/k8s_pods.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=4) + "\n")


def weather():
    hours = []
    for h in range(72):
        hours.append({"time": f"2024-07-{10 + h // 24:02d}T{h % 24:02d}:00", "temperature_2m": round(rng.uniform(12, 31), 1),
                      "relative_humidity_2m": rng.randint(30, 95), "precipitation": round(max(0, rng.gauss(0, 0.8)), 2),
                      "wind_speed_10m": round(rng.uniform(0, 35), 1), "wind_direction_10m": rng.randint(0, 359), "weather_code": rng.choice([0, 1, 2, 3, 45, 61, 80])})
    doc = {"latitude": 52.52, "longitude": 13.419998, "generationtime_ms": 0.0429153442382812, "utc_offset_seconds": 7200,
           "timezone": "Europe/Berlin", "elevation": 38.0, "hourly_units": {"temperature_2m": "°C", "precipitation": "mm", "wind_speed_10m": "km/h"}, "hourly": hours}
    write("json/weather_forecast.json", json.dumps(doc, separators=(",", ":")))


def db_rows():
    rows = []
    for i in range(120):
        n = name()
        rows.append({"id": 10_000 + i, "customer": n, "email": login(n) + "@" + rng.choice(["example.com", "mail.example.org", "corp.example.net"]),
                     "city": rng.choice(CITIES), "plan": rng.choice(["free", "pro", "team", "enterprise"]),
                     "mrr_cents": rng.choice([0, 0, 1200, 4900, 19900, 99000]), "signed_up": ts()[:10], "active": rng.random() < 0.8,
                     "last_seen_ip": f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"})
    write("json/db_query_rows.json", json.dumps({"rowCount": len(rows), "rows": rows}, separators=(",", ":"), ensure_ascii=False))


def escaped_unicode():
    # Python's json.dumps default (ensure_ascii=True): what many Python MCP servers emit.
    products = []
    titles = ["Café crème 250 g", "Müsli ohne Zucker", "Jamón ibérico de bellota", "Смесь для выпечки хлеба",
              "緑茶ティーバッグ 50袋", "有机大米 5公斤", "Crème brûlée à la vanille", "Pierogi z kapustą i grzybami",
              "Kimchi 김치 500g", "Çay bardağı seti (6 adet)"]
    for i in range(40):
        t = rng.choice(titles)
        products.append({"sku": f"SKU-{rng.randint(100000, 999999)}", "title": t, "price": {"amount": round(rng.uniform(1, 60), 2), "currency": "EUR"},
                         "description": f"{t} — {rng.choice(SENTENCES)}", "tags": rng.sample(WORDS, 3), "stock": rng.randint(0, 500)})
    write("json/products_escaped_unicode.json", json.dumps({"products": products}))


def search_api():
    results = []
    for i in range(25):
        results.append({"title": " ".join(rng.sample(WORDS, 5)).capitalize(), "url": f"https://docs.example.com/{'/'.join(rng.sample(WORDS, 3))}/",
                        "snippet": " ".join(rng.sample(SENTENCES, 2)), "score": round(rng.random(), 6), "published": ts()[:10]})
    write("json/search_api.json", json.dumps({"query": "worker memory leak after deploy", "took_ms": 87, "total": 1342, "results": results}, separators=(",", ":")))


# ---------------------------------------------------------------- logs
def nginx():
    paths = ["/api/v1/orders", "/api/v1/orders/{id}", "/static/js/app.{h}.js", "/healthz", "/login", "/api/v1/search?q={q}&page={p}", "/favicon.ico"]
    agents = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
              "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
              "curl/8.5.0", "kube-probe/1.29", "python-requests/2.31.0", "Go-http-client/2.0"]
    lines = []
    for i in range(260):
        p = rng.choice(paths).format(id=rng.randint(1, 99999), h=hexid(8), q=rng.choice(WORDS), p=rng.randint(1, 9))
        lines.append(f'{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)} - - [12/Jun/2024:{8 + i // 60:02d}:{i % 60:02d}:{rng.randint(0, 59):02d} +0000] '
                     f'"{rng.choice(["GET", "GET", "GET", "POST", "PUT", "DELETE"])} {p} HTTP/1.1" {rng.choice([200, 200, 200, 201, 204, 301, 404, 500, 502])} {rng.randint(0, 48000)} '
                     f'"{rng.choice(["-", "https://shop.example.com/", "https://shop.example.com/cart"])}" "{rng.choice(agents)}" rt={rng.uniform(0, 2):.3f} uct="{rng.uniform(0, 0.01):.3f}"')
    write("logs/nginx_access.log", "\n".join(lines) + "\n")


def json_logs():
    lines = []
    for i in range(220):
        lvl = rng.choice(["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"])
        rec = {"ts": f"2024-06-12T09:{i // 60 % 60:02d}:{i % 60:02d}.{rng.randint(0, 999):03d}Z", "level": lvl, "service": rng.choice(["orders-api", "payments", "notifier"]),
               "trace_id": hexid(32), "span_id": hexid(16), "msg": rng.choice(["request completed", "cache miss", "retrying upstream call", "payment authorized", "slow query", "job enqueued"])}
        if lvl in ("WARN", "ERROR"):
            rec["error"] = rng.choice(["context deadline exceeded", "connection reset by peer", "pq: deadlock detected", "upstream returned 503"])
        rec.update({"http.method": rng.choice(["GET", "POST"]), "http.route": rng.choice(["/v1/orders", "/v1/orders/:id", "/v1/payments"]), "http.status": rng.choice([200, 201, 400, 404, 500]),
                    "duration_ms": round(rng.expovariate(1 / 40), 2), "user_id": rng.randint(1, 500000)})
        lines.append(json.dumps(rec, separators=(",", ":")))
    write("logs/app_json.log", "\n".join(lines) + "\n")


def syslog_and_k8s():
    lines = []
    for i in range(160):
        t = f"Jun 12 10:{i // 60 % 60:02d}:{i % 60:02d}"
        lines.append(rng.choice([
            f"{t} web-03 systemd[1]: Started Session {rng.randint(100, 9999)} of User deploy.",
            f"{t} web-03 sshd[{rng.randint(1000, 65000)}]: Accepted publickey for deploy from 10.0.{rng.randint(0, 9)}.{rng.randint(2, 250)} port {rng.randint(30000, 65000)} ssh2: ED25519 SHA256:{base64.b64encode(rng.randbytes(32)).decode().rstrip('=')}",
            f"{t} web-03 kernel: [{rng.uniform(1000, 99999):.6f}] TCP: request_sock_TCP: Possible SYN flooding on port 443. Sending cookies.",
            f"{t} web-03 CRON[{rng.randint(1000, 65000)}]: (root) CMD (/usr/local/bin/backup.sh --incremental >> /var/log/backup.log 2>&1)",
            f"{t} web-03 dockerd[812]: time=\"2024-06-12T10:{i % 60:02d}:00.{rng.randint(0, 999999):06d}Z\" level=info msg=\"ignoring event\" container={hexid(64)} module=libcontainerd namespace=moby topic=/tasks/delete type=\"*events.TaskDelete\"",
            f"{t} web-03 kubelet[1022]: I0612 10:{i % 60:02d}:00.{rng.randint(0, 999999):06d}    1022 kubelet.go:2457] \"SyncLoop (PLEG): event for pod\" pod=\"prod/orders-api-{hexid(10)}-{hexid(5)}\" event={{ID:{uid()} Type:ContainerStarted}}",
        ]))
    write("logs/syslog.log", "\n".join(lines) + "\n")


def stack_traces():
    java = """2024-06-12 11:04:17.482 ERROR 1 --- [nio-8080-exec-7] o.a.c.c.C.[.[.[/].[dispatcherServlet]    : Servlet.service() for servlet [dispatcherServlet] in context with path [] threw exception [Request processing failed; nested exception is org.springframework.dao.DataIntegrityViolationException: could not execute statement; SQL [n/a]; constraint [uk_reservation_order_sku]] with root cause

org.postgresql.util.PSQLException: ERROR: duplicate key value violates unique constraint "uk_reservation_order_sku"
  Detail: Key (order_id, sku)=(ORD-{o}, SKU-{s}) already exists.
\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2713) ~[postgresql-42.6.0.jar!/:42.6.0]
\tat org.postgresql.core.v3.QueryExecutorImpl.processResults(QueryExecutorImpl.java:2401) ~[postgresql-42.6.0.jar!/:42.6.0]
\tat org.postgresql.core.v3.QueryExecutorImpl.execute(QueryExecutorImpl.java:368) ~[postgresql-42.6.0.jar!/:42.6.0]
\tat org.postgresql.jdbc.PgStatement.executeInternal(PgStatement.java:498) ~[postgresql-42.6.0.jar!/:42.6.0]
\tat org.postgresql.jdbc.PgPreparedStatement.executeUpdate(PgPreparedStatement.java:152) ~[postgresql-42.6.0.jar!/:42.6.0]
\tat com.zaxxer.hikari.pool.HikariProxyPreparedStatement.executeUpdate(HikariProxyPreparedStatement.java) ~[HikariCP-5.0.1.jar!/:na]
\tat org.hibernate.engine.jdbc.internal.ResultSetReturnImpl.executeUpdate(ResultSetReturnImpl.java:197) ~[hibernate-core-5.6.15.Final.jar!/:5.6.15.Final]
\tat org.hibernate.persister.entity.AbstractEntityPersister.insert(AbstractEntityPersister.java:3375) ~[hibernate-core-5.6.15.Final.jar!/:5.6.15.Final]
\tat com.example.warehouse.inventory.InventoryService.reserve(InventoryService.java:{line}) ~[classes!/:1.4.{v}]
\tat com.example.warehouse.inventory.InventoryService$$FastClassBySpringCGLIB$$a1b2c3d4.invoke(<generated>) ~[classes!/:1.4.{v}]
\tat org.springframework.cglib.proxy.MethodProxy.invoke(MethodProxy.java:218) ~[spring-core-5.3.31.jar!/:5.3.31]
\tat org.springframework.aop.framework.CglibAopProxy$CglibMethodInvocation.invokeJoinpoint(CglibAopProxy.java:793) ~[spring-aop-5.3.31.jar!/:5.3.31]
\tat org.springframework.transaction.interceptor.TransactionInterceptor.invoke(TransactionInterceptor.java:119) ~[spring-tx-5.3.31.jar!/:5.3.31]
\tat java.base/java.lang.Thread.run(Thread.java:840) ~[na:na]
"""
    py = """Traceback (most recent call last):
  File "/srv/app/.venv/lib/python3.11/site-packages/celery/app/trace.py", line 477, in trace_task
    R = retval = fun(*args, **kwargs)
                 ^^^^^^^^^^^^^^^^^^^^
  File "/srv/app/worker/tasks.py", line {line}, in send_invoice_email
    pdf = render_invoice(invoice_id)
          ^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/app/billing/render.py", line 88, in render_invoice
    template = env.get_template(f"invoice_{{locale}}.html")
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/app/.venv/lib/python3.11/site-packages/jinja2/environment.py", line 1013, in get_template
    return self._load_template(name, globals)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
jinja2.exceptions.TemplateNotFound: invoice_pt_BR.html
[2024-06-12 11:{m:02d}:{s:02d},{ms:03d}: ERROR/ForkPoolWorker-{w}] Task billing.send_invoice_email[{u}] raised unexpected: TemplateNotFound('invoice_pt_BR.html')
"""
    out = []
    for i in range(7):
        out.append(java.format(o=rng.randint(10000, 99999), s=rng.randint(100000, 999999), line=rng.randint(60, 90), v=rng.randint(0, 9)))
        out.append(py.format(line=rng.randint(100, 300), m=rng.randint(0, 59), s=rng.randint(0, 59), ms=rng.randint(0, 999), w=rng.randint(1, 8), u=uid()))
    write("logs/stack_traces.log", "\n".join(out))


def build_output():
    lines = ["$ cargo build --release"]
    crates = ["serde", "serde_json", "tokio", "hyper", "regex", "thiserror", "tracing", "bytes", "http", "futures-util", "itoa", "ryu", "memchr", "once_cell", "proc-macro2", "quote", "syn"]
    for c in crates:
        lines.append(f"   Compiling {c} v{rng.randint(0, 2)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}")
    lines += ["   Compiling orders-api v0.7.2 (/home/ci/src/orders-api)",
              "warning: unused variable: `retries`",
              "  --> src/upstream.rs:142:13",
              "    |",
              "142 |         let retries = cfg.max_retries;",
              "    |             ^^^^^^^ help: if this is intentional, prefix it with an underscore: `_retries`",
              "    |",
              "    = note: `#[warn(unused_variables)]` on by default",
              "",
              "error[E0308]: mismatched types",
              "   --> src/handlers/orders.rs:88:24",
              "    |",
              "88  |     let total: u64 = line_items.iter().map(|l| l.price * l.qty).sum::<u32>();",
              "    |                ---   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ expected `u64`, found `u32`",
              "    |                |",
              "    |                expected due to this",
              "    |",
              "help: you can convert a `u32` to a `u64`",
              "    |",
              "88  |     let total: u64 = line_items.iter().map(|l| l.price * l.qty).sum::<u32>().into();",
              "    |                                                                             +++++++",
              "",
              "For more information about this error, try `rustc --explain E0308`.",
              "warning: `orders-api` (bin \"orders-api\") generated 1 warning",
              "error: could not compile `orders-api` (bin \"orders-api\") due to 1 previous error; 1 warning emitted",
              "",
              "$ npm test",
              "",
              "> web@2.3.0 test",
              "> vitest run --reporter=verbose",
              ""]
    for i in range(40):
        ok = rng.random() < 0.9
        lines.append(f" {'✓' if ok else '×'} src/components/{rng.choice(['Cart', 'Checkout', 'OrderList', 'Search'])}.test.tsx > {rng.choice(['renders', 'handles', 'updates', 'validates'])} {' '.join(rng.sample(WORDS, 3))} {rng.randint(1, 300)}ms")
        if not ok:
            lines.append(f"   → expected {rng.randint(0, 9)} to be {rng.randint(10, 20)} // Object.is equality")
    lines += ["", " Test Files  2 failed | 11 passed (13)", "      Tests  4 failed | 36 passed (40)", f"   Duration  {rng.uniform(2, 9):.2f}s (transform 812ms, setup 0ms, collect 3.41s, tests 2.10s)"]
    write("logs/build_output.log", "\n".join(lines) + "\n")


# ---------------------------------------------------------------- csv
def csvs():
    rows = ["order_id,created_at,customer_name,city,country,sku,quantity,unit_price,currency,status"]
    for i in range(300):
        rows.append(f"ORD-{200000 + i},{ts().replace('T', ' ').rstrip('Z')},\"{name()}\",{rng.choice(CITIES)},{rng.choice(['PT', 'CA', 'KE', 'JP', 'PL', 'US', 'AU', 'CO', 'DE', 'FR'])},"
                    f"SKU-{rng.randint(100000, 999999)},{rng.randint(1, 12)},{rng.uniform(0.5, 400):.2f},{rng.choice(['EUR', 'USD', 'GBP'])},{rng.choice(['paid', 'shipped', 'refunded', 'pending'])}")
    write("csv/orders.csv", "\n".join(rows) + "\n")
    rows = ["timestamp,host,cpu_user,cpu_system,mem_used_mb,disk_read_kbps,disk_write_kbps,net_rx_kbps,net_tx_kbps,load1"]
    for i in range(300):
        rows.append(f"{1718186400 + i * 15},web-{rng.randint(1, 6):02d},{rng.uniform(0, 100):.2f},{rng.uniform(0, 30):.2f},{rng.randint(800, 15800)},{rng.uniform(0, 9000):.1f},{rng.uniform(0, 20000):.1f},{rng.uniform(0, 90000):.1f},{rng.uniform(0, 90000):.1f},{rng.uniform(0, 8):.2f}")
    write("csv/host_metrics.csv", "\n".join(rows) + "\n")
    rows = ["id;nom;prénom;email;ville;date_inscription;solde"]
    for i in range(150):
        n = name().split()
        ville = rng.choice(["Paris", "Marseille", "Lyon", "Toulouse", "Nice", "Nantes", "Besançon", "Orléans"])
        solde = f"{rng.uniform(-500, 5000):.2f}".replace(".", ",")
        rows.append(f"{i + 1};{n[1]};{n[0]};{login(' '.join(n))}@exemple.fr;{ville};"
                    f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/20{rng.randint(15, 24)};{solde}")
    write("csv/clients_fr.csv", "\n".join(rows) + "\n")


# ---------------------------------------------------------------- encoded
def encoded():
    # A "PNG": real signature and IHDR, then incompressible bytes, as an image tool result carries.
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x00\xc0\x08\x06\x00\x00\x00" + rng.randbytes(14000)
    write("encoded/image_png.b64", base64.b64encode(png).decode())
    der = rng.randbytes(1100)
    pem = "-----BEGIN CERTIFICATE-----\n" + "\n".join(base64.b64encode(der).decode()[i:i + 64] for i in range(0, 1468, 64)) + "\n-----END CERTIFICATE-----\n"
    write("encoded/cert.pem", pem * 2)

    def b64url(b):
        return base64.urlsafe_b64encode(b).decode().rstrip("=")
    jwts = []
    for i in range(30):
        header = b64url(json.dumps({"alg": "RS256", "kid": hexid(16), "typ": "JWT"}, separators=(",", ":")).encode())
        claims = b64url(json.dumps({"sub": uid(), "iss": "https://auth.example.com/", "aud": "orders-api", "exp": 1718190000 + i, "scope": "orders:read orders:write"}, separators=(",", ":")).encode())
        jwts.append(f"Authorization: Bearer {header}.{claims}.{b64url(rng.randbytes(256))}")
    write("encoded/jwt_headers.txt", "\n".join(jwts) + "\n")
    lines = []
    data = rng.randbytes(2048)
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        hx = " ".join(f"{b:02x}" for b in chunk)
        asc = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {hx[:23]}  {hx[24:]}  |{asc}|")
    write("encoded/hexdump.txt", "\n".join(lines) + "\n")
    lines = []
    for i in range(120):
        sha = hashlib.sha1(rng.randbytes(20)).hexdigest()
        lines.append(f"{sha} {rng.choice(['fix', 'feat', 'chore', 'docs', 'refactor'])}({rng.choice(WORDS)}): {rng.choice(SENTENCES).lower().rstrip('.')}")
    write("encoded/git_log_hashes.txt", "\n".join(lines) + "\n")
    ids = [f"{uid()}\t{hashlib.sha256(rng.randbytes(8)).hexdigest()}\t{rng.randint(0, 10**9)}" for _ in range(80)]
    write("encoded/uuids_and_sha256.tsv", "request_id\tbody_sha256\tbytes\n" + "\n".join(ids) + "\n")


if __name__ == "__main__":
    github_issues()
    tools_lists()
    k8s_pods()
    weather()
    db_rows()
    escaped_unicode()
    search_api()
    nginx()
    json_logs()
    syslog_and_k8s()
    stack_traces()
    build_output()
    csvs()
    encoded()
