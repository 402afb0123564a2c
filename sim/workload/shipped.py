"""The traces fleetsim ships (name -> file in traces/, format) and how much of one a run replays by default."""

SHIPPED = {
    "azure-conv": ("azure_conv_2023.csv", "azure"),
    "azure-code": ("azure_code_2023.csv", "azure"),
    "mooncake-conv": ("mooncake_conv_sample.jsonl", "mooncake"),
    # Synthetic (random values in the format of a vLLM benchmark result): shows --compare on any install.
    "vllm-bench-example": ("vllm_bench_example.json", "vllm-bench"),
}
DEFAULT_WINDOW_S = 600.0  # a shipped trace or generated traffic with neither a count nor a window: 10 minutes
