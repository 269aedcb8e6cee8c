"""Batches: the Batches API (``service``), the runner that works through them (``runner``), the
input lines it reads (``input``) and the cloud SDK's batch tasks over datasets (``inference``).
Their state is ``fovea.store.batches``'s."""
