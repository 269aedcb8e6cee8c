"""Finished completions by model, status and kind, their latencies and tokens: counted in plain
dicts on the event loop (as ``http`` counts requests) and turned into Prometheus families when
scraped. With prometheus_client's labelled metrics, a completion's updates cost ~10 µs (a lock
each); here ~2 µs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from fovea.observability.http import Histograms
from fovea.services.chat_events import FinishedCompletion

TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
INTER_TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.2, 0.5, 1)
# (family name, help) of each per-model token counter, in the order ``add`` counts them.
TOKEN_FAMILIES = (
    ("fovea_prompt_tokens", "Prompt tokens, images included"),
    ("fovea_completion_tokens", "Generated tokens"),
    ("fovea_image_tokens", "Prompt positions taken by images"),
    ("fovea_cached_tokens", "Prompt tokens reused from the cache"),
    ("fovea_images", "Images in completed requests"),
)


class Completions:
    """A prometheus_client collector; ``add`` is called on the event loop only."""

    def __init__(
        self,
        ttft_buckets: Sequence[float] = TTFT_BUCKETS,
        inter_token_buckets: Sequence[float] = INTER_TOKEN_BUCKETS,
    ) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._ttft = Histograms(ttft_buckets)
        self._inter_token = Histograms(inter_token_buckets)
        self._tokens: dict[str, list[int]] = {}

    def add(self, completion: FinishedCompletion) -> None:
        model = completion.model
        kind = "batch" if completion.is_batch else "interactive"
        self._counts[(model, completion.status.value, kind)] += 1
        if completion.ttft_s is not None:
            self._ttft.add((model, kind), completion.ttft_s)
        inter_token = completion.inter_token_s
        if inter_token is not None:
            self._inter_token.add((model, kind), inter_token)
        tokens = self._tokens.get(model)
        if tokens is None:
            tokens = self._tokens[model] = [0] * len(TOKEN_FAMILIES)
        tokens[4] += completion.images
        usage = completion.usage
        if usage is not None:
            tokens[0] += usage.prompt_tokens
            tokens[1] += usage.completion_tokens
            tokens[2] += usage.image_tokens
            tokens[3] += usage.cached_tokens

    def collect(self) -> Iterator[Metric]:
        completions = CounterMetricFamily(
            "fovea_completions",
            "Finished completions by model, status and kind (interactive or batch)",
            labels=["model", "status", "kind"],
        )
        for labels, count in self._counts.items():
            completions.add_metric(list(labels), count)
        yield completions
        for name, what, histograms in (
            (
                "fovea_time_to_first_token_seconds",
                "From accepting a completion to its first generated chunk",
                self._ttft,
            ),
            (
                "fovea_inter_token_latency_seconds",
                "A completion's mean time between generated tokens after the first",
                self._inter_token,
            ),
        ):
            family = HistogramMetricFamily(name, what, labels=["model", "kind"])
            for labels, buckets, total in histograms.cumulative():
                family.add_metric(list(labels), buckets, sum_value=total)
            yield family
        for index, (name, what) in enumerate(TOKEN_FAMILIES):
            counter = CounterMetricFamily(name, what, labels=["model"])
            for model, counts in self._tokens.items():
                counter.add_metric([model], counts[index])
            yield counter
