"""A measured option, not used by MesoCare: the encoder as a static-shape TFLite model with XNNPACK.

Converts the encoder's forward pass (the same weights, TensorFlow's own converter, builtin ops only) for one
text of `--width` tokens, checks its output against mesocare.encoder's, and times both per message.

Usage: .venv/bin/python scripts/bench_encoder_tflite.py [--width 8] [--text "does it hurt"]
(about 30 s: the conversion takes ~20 s; nothing is written to the project.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8, help="tokens per text (the model's fixed shape)")
    parser.add_argument("--text", default="does it hurt")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    import tensorflow as tf

    from mesocare.encoder import Encoder

    encoder = Encoder(cache_size=0)
    model = encoder._model
    spec = tf.TensorSpec([1, args.width], tf.int32)

    @tf.function(input_signature=[spec, spec])
    def forward(input_ids: tf.Tensor, attention_mask: tf.Tensor) -> tf.Tensor:
        hidden = model(input_ids=input_ids, attention_mask=attention_mask,
                       token_type_ids=tf.zeros_like(input_ids), training=False).last_hidden_state
        mask = tf.expand_dims(tf.cast(attention_mask, hidden.dtype), -1)
        pooled = tf.reduce_sum(hidden * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)
        return tf.math.l2_normalize(pooled, axis=1)

    started = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    report: dict[str, object] = {"convert_s": round(time.perf_counter() - started, 1),
                                 "model_mb": round(len(flatbuffer) / 1e6, 1)}

    tokens = encoder._tokenizer([args.text], truncation=True, max_length=args.width)["input_ids"][0]
    ids = np.zeros((1, args.width), np.int32)
    mask = np.zeros((1, args.width), np.int32)
    ids[0, : len(tokens)], mask[0, : len(tokens)] = tokens, 1
    reference = encoder._forward(tf.constant(ids), tf.constant(mask)).numpy()

    def timed(call: object) -> dict[str, float]:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            call()  # type: ignore[operator]
            times.append((time.perf_counter() - t0) * 1000)
        return {"median_ms": round(statistics.median(times), 2),
                "p95_ms": round(sorted(times)[int(0.95 * (len(times) - 1))], 2)}

    report["tensorflow"] = timed(lambda: encoder._forward(tf.constant(ids), tf.constant(mask)).numpy())
    for threads in (1, 2):
        interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=threads)
        interpreter.allocate_tensors()
        inputs = interpreter.get_input_details()
        output = interpreter.get_output_details()[0]["index"]

        def run(interpreter: tf.lite.Interpreter = interpreter, inputs: list = inputs, output: int = output
                ) -> np.ndarray:
            for detail in inputs:
                interpreter.set_tensor(detail["index"], ids if "input_ids" in detail["name"] else mask)
            interpreter.invoke()
            return interpreter.get_tensor(output)

        report[f"tflite_{threads}_threads"] = {**timed(run),
                                               "max_abs_difference": float(np.abs(run() - reference).max())}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
