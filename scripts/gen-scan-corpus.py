#!/usr/bin/env python3
"""Writes the scanner's test corpus, tests/data/secrets/ (run from the repository root).

planted/<family>.txt   every rule's examples inside realistic surroundings (config files,
                       code, prose, logs), one family per rules file and kind;
planted/expected.tsv   file, lines, rule: what the scanner must report (recall must be 100%);
benign/*.txt           look-alikes that must not be reported: hashes, UUIDs, integrity
                       strings, placeholders, documented example keys, public keys and
                       certificates, numbers that fail their checksum, tokens in prose.

Deterministic (fixed seed); the test suite reads the files, so regenerate and commit after
changing rules/.
"""
import os
import random
import tomllib

R = random.Random(7)
ROOT = "tests/data/secrets"
HEX = "0123456789abcdef"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
AN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def rnd(cs, n):
    return "".join(R.choice(cs) for _ in range(n))


BEFORE = [
    ["# Deployment settings for the staging cluster.", "# Rotated by the platform team every quarter."],
    ["def connect(config):", "    # credentials come from the environment in production"],
    ["Hi team, here is what I used to reproduce the bug on my laptop:", ""],
    ['{"level":"debug","msg":"loaded settings","component":"worker"}'],
    ["services:", "  api:", "    environment:"],
    ["<!-- maintainer notes -->", "Steps to run the integration tests locally:"],
]
AFTER = [
    ["", "# end of settings"],
    ["    return Client(config)", ""],
    ["Let me know if you need anything else.", ""],
    ['{"level":"info","msg":"worker started","pid":4242}'],
    ["    ports:", '      - "8080:8080"'],
    ["Then run `make test`.", ""],
]


def planted():
    files = {}
    expected = []
    for f in sorted(os.listdir("rules")):
        if not f.endswith(".toml"):
            continue
        rules = tomllib.load(open(os.path.join("rules", f), "rb"))["rule"]
        for r in rules:
            family = f[:-5] + ("-pii" if r.get("kind") == "pii" and f != "pii.toml" else "")
            lines = files.setdefault(family, ["# Ward scanner test corpus: planted secrets (made up)."])
            for ex in r.get("examples", []):
                k = R.randrange(len(BEFORE))
                lines.extend(BEFORE[k])
                first = len(lines) + 1
                lines.extend(ex.split("\n"))
                expected.append((family + ".txt", first, len(lines), r["id"]))
                lines.extend(AFTER[k])
    os.makedirs(ROOT + "/planted", exist_ok=True)
    for family, lines in files.items():
        with open(f"{ROOT}/planted/{family}.txt", "w") as out:
            out.write("\n".join(lines) + "\n")
    with open(f"{ROOT}/planted/expected.tsv", "w") as out:
        out.write("# file\tfirst line\tlast line\trule\n")
        for e in expected:
            out.write("%s\t%d\t%d\t%s\n" % e)
    return len(expected)


def uuid():
    return "-".join(rnd(HEX, n) for n in (8, 4, 4, 4, 12))


def luhn_fail(prefix, n):
    while True:
        c = prefix + rnd("0123456789", n - len(prefix))
        d = [int(x) for x in c]
        t = sum(x if i % 2 == 0 else (x * 2 - 9 if x * 2 > 9 else x * 2) for i, x in enumerate(reversed(d)))
        if t % 10 != 0:
            return c


def bad_iban():
    """A German-looking IBAN whose check digits are wrong."""
    while True:
        bban = rnd("0123456789", 8) + "0000000000"
        check = "%02d" % R.randrange(100)
        n = int(bban + "1314" + check)  # D=13, E=14
        if n % 97 != 1:
            s = "DE" + check + bban
            return "IBAN: " + " ".join(s[i:i + 4] for i in range(0, len(s), 4))


def benign():
    words = ("the agent reads the token count from the tokenizer before it sends the request and "
             "the password policy requires twelve characters while the secret manager rotates keys").split()
    gen = {
        "hashes.txt": lambda: R.choice([
            f"{rnd(HEX, 64)}  dist/app-{R.randrange(99)}.tar.gz",
            f"commit {rnd(HEX, 40)}",
            f'      "integrity": "sha512-{rnd(B64, 86)}==",',
            f'      "resolved": "https://registry.npmjs.org/pkg/-/pkg-1.{R.randrange(20)}.0.tgz",',
            f"sha1:{rnd(HEX, 40)}",
            f"docker pull ghcr.io/acme/app@sha256:{rnd(HEX, 64)}",
        ]),
        "logs.txt": lambda: R.choice([
            f'{{"ts":"2026-11-25T10:{R.randrange(60):02}:00Z","request_id":"{uuid()}","status":200,"ms":{R.randrange(900)}}}',
            f"2026-11-25 10:{R.randrange(60):02}:11 INFO session {uuid()} closed after {R.randrange(999)} ms",
            f"trace_id={rnd(HEX, 32)} span_id={rnd(HEX, 16)} op=db.query",
            f"GET /api/v1/items/{R.randrange(10**6)} 200 {R.randrange(99)}ms ua=curl/8.4.0",
        ]),
        "code.txt": lambda: R.choice([
            '    token = os.environ["GITHUB_TOKEN"]',
            "    password = getpass.getpass('Password: ')",
            '    api_key = config.get("api_key")',
            "    const secret = process.env.STRIPE_SECRET_KEY;",
            "    let token_count = tokenizer.encode(&text).len();",
            '    if password_hash != expected_hash { return Err("bad password".into()); }',
            "    max_tokens: int = 4096",
            '    headers = {"Authorization": f"Bearer {token}"}',
            '    secret_name = "prod/database/credentials"',
            '    DATABASE_URL = "postgres://app@db.internal:5432/main"',
            "    password_field.set_placeholder(\"Enter your password\")",
            '    aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"',
            '    client_secret = "${CLIENT_SECRET}"',
            '    token_url = "https://oauth2.googleapis.com/token"',
            "    key_len = 32  # bytes of the derived key",
            '    STRIPE_KEY = "sk_test_your_key_here"',
            "    // see docs for how api keys are scoped",
        ]),
        "prose.txt": lambda: " ".join(R.choice(words) for _ in range(14)).capitalize() + ".",
        "keys.txt": lambda: R.choice([
            f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{rnd(B64, 43)} alice@laptop",
            f"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ{rnd(B64, 60)} bob@ci",
            "-----BEGIN PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----",
            f"MII{rnd(B64, 61)}",
            "-----END CERTIFICATE-----",
            "-----BEGIN RSA PRIVATE KEY----- (paste it in the vault, never here)",
        ]),
        "numbers.txt": lambda: R.choice([
            f"Order {luhn_fail('4', 16)} shipped on 2026-11-{R.randrange(1, 29):02}",
            f"Card number: {luhn_fail('5', 16)} (declined: checksum)",
            f"version {R.randrange(9)}.{R.randrange(99)}.{R.randrange(999)} built {R.randrange(10**9)}",
            f"Invoice INV-{R.randrange(10**8):08} total {R.randrange(9999)}.{R.randrange(99):02} EUR",
            bad_iban(),
            f"Phone extension {R.randrange(100, 999)}, room {R.randrange(100, 999)}",
            f"color: #{rnd(HEX, 6)}; margin: {R.randrange(40)}px",
            f"listen 10.{R.randrange(255)}.{R.randrange(255)}.{R.randrange(255)}:{R.randrange(1024, 65535)}",
            f"ssn field left empty; employee id E{R.randrange(10**6):06}",
        ]),
    }
    os.makedirs(ROOT + "/benign", exist_ok=True)
    total = 0
    for name, make in gen.items():
        lines = [make() for _ in range(200)]
        total += len(lines)
        with open(f"{ROOT}/benign/{name}", "w") as out:
            out.write("\n".join(lines) + "\n")
    return total


if __name__ == "__main__":
    print("planted:", planted(), "benign lines:", benign())
