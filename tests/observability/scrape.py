"""A parsed /metrics exposition, read the way a dashboard would: by family and labels."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass
class Scrape:
    families: dict[str, str]  # name -> type
    samples: list[Sample]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        families = list(text_string_to_metric_families(text))
        return cls(
            families={f.name: f.type for f in families},
            samples=[s for f in families for s in f.samples],
        )

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples that carry ``labels`` (0 when there are none)."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}
