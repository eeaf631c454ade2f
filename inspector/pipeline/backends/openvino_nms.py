"""Decoding and class-aware NMS inside the OpenVINO graph, so the host gets a few boxes per frame.

`with_nms` appends to the runtime graph what `postprocess.decode_yolo` + `postprocess.nms` do on
the host: each anchor's best class (TopK over the class scores, the first of equal ones, as
``argmax``), its score only in that class, and NonMaxSuppression per class on the centre-encoded
boxes. The raw output stays output 0 (evaluation, benchmarks and tiling read it); outputs 1 and 2
are the selected ``(batch, class, anchor)`` triples and their scores. `detections_per_item` turns
them into the same ``(K, 6)`` ``x1 y1 x2 y2 score class`` rows, best first, that the host path
gives, for every score at or above `CONF_FLOOR`.

Greedy NMS keeps a box only against higher-scored ones, so running it from a low floor and
dropping what is below a camera's own confidence afterwards keeps exactly the boxes that running
it from that confidence would (``conf >= CONF_FLOOR``; the scheduler's is at least 0.05).
Measured on two AMX cores at 8-camera saturation (`benchmarks/host_cpu.py`): the host's decode +
NMS + box mapping took ~0.05 core-ms a frame (the post thread 0.10 -> 0.045 with them left out);
done here instead, the post thread went 0.110 -> 0.085 and the host threads 0.277 -> 0.248, with no
measurable change in the runtime's own time per frame. Identical rows to the host path on 400
held-out frames at f32 and at bf16 (equal scores ordered by anchor, as the host's stable sort).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inspector.pipeline.postprocess import CONF_FLOOR

#: Per class and image, as `postprocess.nms`'s max_det for the whole image
MAX_PER_CLASS = 300
#: Tensor names of outputs 1 and 2 (the selected triples, their scores)
OUTPUT_NAMES = ("nms_selected", "nms_scores")


def with_nms(model: Any, num_classes: int, iou_threshold: float) -> Any:
    """``model`` (raw output ``(N, 4 + nc, A)``) with the selected boxes as outputs 1 and 2."""
    import openvino as ov
    import openvino.opset13 as ops

    result = model.get_results()[0]
    raw = result.input_value(0)  # what feeds the raw output (new ops hang off it, not off the Result)

    def rows(first: int, last: int) -> Any:
        return ops.slice(raw, ops.constant([first]), ops.constant([last]), ops.constant([1]), ops.constant([1]))

    boxes = ops.transpose(rows(0, 4), ops.constant([0, 2, 1]))  # (N, A, 4) cx cy w h
    scores = rows(4, 4 + num_classes)  # (N, nc, A)
    best = ops.topk(scores, ops.constant(1), axis=1, mode="max", sort="none", index_element_type="i32")
    onehot = ops.one_hot(ops.squeeze(best.output(1), ops.constant([1])), ops.constant(num_classes),
                         ops.constant(1.0, ov.Type.f32), ops.constant(0.0, ov.Type.f32), axis=1)
    only_best = ops.multiply(scores, onehot)  # an anchor competes in its best class only
    # a hair under the floor: the op drops scores at or below its threshold, the host keeps >= conf
    nms = ops.non_max_suppression(
        boxes, only_best, ops.constant(MAX_PER_CLASS, ov.Type.i64), ops.constant(float(iou_threshold), ov.Type.f32),
        ops.constant(CONF_FLOOR * 0.999, ov.Type.f32), box_encoding="center", sort_result_descending=False,
        output_type="i32")
    # named outputs: the runtime names an unnamed one after its Result node, whose number differs with every
    # graph built in a process, and the compiled-model cache's key covers output names (a new cache blob
    # with every backend: every recipe switch and start wrote one, none was ever read again)
    for i, name in enumerate(OUTPUT_NAMES):
        nms.output(i).get_tensor().set_names({name})
    return ov.Model([result, *(ops.result(nms.output(i)) for i in (0, 1))], model.get_parameters(),
                    model.get_friendly_name())


def detections_per_item(raw: np.ndarray, selected: np.ndarray, scores: np.ndarray, n: int) -> list[np.ndarray]:
    """The selected boxes of each of the ``n`` images: ``(K, 6)`` float32 ``x1 y1 x2 y2 score class``
    in input pixels, best first. ``selected``/``scores``: the graph's ``(M, 3)`` outputs.

    The few rows of a usual batch are ordered in Python (a dozen numpy calls, each of which may hand the GIL
    to another thread, cost more than the rows); many rows go through numpy (`_detections_numpy`, the same rows).
    """
    if len(selected) > _FEW_ROWS:
        return _detections_numpy(raw, selected, scores, n)
    # by image, best first, equal scores by anchor (as the host's stable sort); rows past the valid ones are -1
    rows = sorted((b, -s, a, c) for (b, c, a), s in zip(selected.tolist(), scores[: len(selected), 2].tolist())
                  if b >= 0)
    if not rows:
        return [np.zeros((0, 6), np.float32) for _ in range(n)]
    # each row's box read as four floats and made x1 y1 x2 y2 in Python, one array at the end: the advanced index
    # of the output and six column writes cost ~25 us a batch of one; the values are numpy's f32 ones (a half is
    # exact, and each sum of two f32 values rounds once either way)
    boxes = []
    for b, neg, a, c in rows:
        cx, cy, w, h = raw[b, :4, a].tolist()
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, -neg, c))
    out = np.array(boxes, np.float32)
    if n == 1:
        return [out]
    per: list[np.ndarray] = []
    first = 0
    for i in range(n):
        last = first
        while last < len(rows) and rows[last][0] == i:
            last += 1
        per.append(out[first:last])
        first = last
    return per


#: Up to this many selected rows, `detections_per_item` orders them in Python
_FEW_ROWS = 64


def _detections_numpy(raw: np.ndarray, selected: np.ndarray, scores: np.ndarray, n: int) -> list[np.ndarray]:
    """`detections_per_item` in numpy calls (many rows)."""
    valid = selected[:, 0] >= 0  # rows past the valid ones are -1 where the runtime pads
    sel = selected[valid]
    if not len(sel):
        return [np.zeros((0, 6), np.float32) for _ in range(n)]
    score = scores[: len(selected)][valid, 2]
    b, cls, a = sel[:, 0], sel[:, 1], sel[:, 2]
    cxcywh = raw[b, :4, a]  # (M, 4)
    out = np.empty((len(sel), 6), np.float32)
    half = cxcywh[:, 2:4] / 2
    out[:, 0:2] = cxcywh[:, 0:2] - half
    out[:, 2:4] = cxcywh[:, 0:2] + half
    out[:, 4] = score
    out[:, 5] = cls
    order = np.lexsort((a, -score, b))  # by image, best first, equal scores by anchor (as the host's stable sort)
    out, b = out[order], b[order]
    cuts = np.searchsorted(b, np.arange(n + 1))
    return [out[cuts[i] : cuts[i + 1]] for i in range(n)]
