"""The inference comparison after training (`measurement.inference`): per framework and precision
(fp32, fp16, bf16, post-training int8), latency p50/p90/p99 per batch and per image, throughput,
the serialized model's size and test accuracy, int8 calibrated on the same training images in every
framework. `support` is pure Python (the planner reads it); `protocol` drives a framework module
(`torch_quant`, `tf_quant`), imported only inside the workload. docs/workload.md "Inference".
"""
