"""Read a /metrics body the way Prometheus does, with prometheus_client's own parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape: every sample by name and labels, and the body as sent."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.families: set[str] = set()
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get(self, name: str, **labels: str | int) -> float | None:
        """Return the sample `name` with exactly these labels, or None if there is none."""
        key = (name, frozenset((k, str(v)) for k, v in labels.items()))
        return self.samples.get(key)

    def labelled(self, name: str, label: str) -> dict[str, float]:
        """Return the samples of `name` by the value of their one label `label`."""
        found = {}
        for (sample, labels), value in self.samples.items():
            pairs = dict(labels)
            if sample == name and set(pairs) == {label}:
                found[pairs[label]] = value
        return found


def scrape(base_url: str) -> Scrape:
    """GET base_url/metrics and parse it, checking it is Prometheus' text format."""
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)
