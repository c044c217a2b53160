"""The scaling benchmark's settings (``--set`` overrides of ``configs/default.yaml``), in a module of their own so
that ``benchmarks/client_memory.py`` reads them without importing anything. The corpus is set in full (24 speakers
of 120 utterances, 18 of them training), so the workload stays what BENCHMARKS.md measured when the default
corpus changed."""

COMMON = [
    "data.embedded.n_speakers=24", "data.embedded.utterances_per_emotion=24", "data.test_speakers=0.25",
    "federation.partition=iid",
    "federation.baselines=[]", "federation.node_wait_s=600", "federation.round_timeout_s=3600",
]  # fmt: skip
WORK = {
    "light": [
        "data.embedded.duration_s=[1.0, 1.2]", "features.segment_s=1.2", "features.n_mels=32", "model.name=cnn_iot",
        "model.width=4", "federation.method=dm", "federation.ipc=1", "distill.dm_iterations=2",
        "distill.eval_epochs=5",
    ],
    "default": [],
}  # fmt: skip
