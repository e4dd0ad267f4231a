"""Run a file exported by tools/deploy/export.py on images with ONNX Runtime, fed by FILE.json
alone: numpy and Pillow (OpenCV where FILE.json's resize says ``backend: cv2``), no PyTorch, no
OpenMMLab. What it does to an image is FILE.json's ``preprocess``, ``inference`` and ``outputs``
(docs/user_guides/deployment.md, "What FILE.json says"), the same as the toolbox's test pipeline
and data preprocessor.

    python tools/deploy/run_onnx.py FILE.onnx IMAGE [IMAGE ...] [--out-dir DIR] [--topk K]
        [--debug]

It prints per image: a classifier's top classes, a segmenter's share of pixels per class, a
detector's feature shapes (its boxes come from the PyTorch heads:
``addp_mm.apis.export.detect_with_onnx_features``). ``--out-dir`` writes ``<image name>.npz``
(the input tensor and the outputs; a segmenter's averaged logits and its label map) and, for a
segmenter, ``<image name>.png`` (the label map).
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/cli.py
from cli import UsageError, add_debug_flag, require_file, run_tool  # noqa: E402

SCHEMA = 'addp-mm-deploy/1'  # = addp_mm.apis.export.SCHEMA (here: no torch)
PILLOW_FILTERS = ('nearest', 'bilinear', 'bicubic', 'box', 'lanczos', 'hamming')
CV2_FLAGS = {'nearest': 'INTER_NEAREST', 'bilinear': 'INTER_LINEAR', 'bicubic': 'INTER_CUBIC',
             'area': 'INTER_AREA', 'lanczos': 'INTER_LANCZOS4'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Run an exported model on images with ONNX Runtime, '
                                'preprocessed by FILE.json alone (addp-mm)')
    p.add_argument('onnx', help='the file tools/deploy/export.py wrote (FILE.json beside it)')
    p.add_argument('images', nargs='+', help='image files')
    p.add_argument('--out-dir', help='write <image name>.npz (and a segmenter\'s label map .png)')
    p.add_argument('--topk', type=int, default=3, help='classes printed per image (classifier)')
    add_debug_flag(p)
    return p.parse_args(argv)


def load_spec(onnx_file: str) -> dict:
    """FILE.json of ``onnx_file``."""
    require_file(onnx_file + '.json', 'FILE.json',
                 'tools/deploy/export.py writes it beside the file it exports.')
    with open(onnx_file + '.json') as f:
        spec = json.load(f)
    if spec.get('schema') != SCHEMA:
        raise UsageError(f'{onnx_file}.json: schema {spec.get("schema")!r}, this tool reads '
                         f'{SCHEMA!r}: export the file again with tools/deploy/export.py')
    return spec


def decode(path: str):
    """The image as 8-bit RGB, ``(H, W, 3)`` (EXIF orientation applied, grey replicated, alpha
    dropped: what OpenCV's ``imread`` in the toolboxes' ``LoadImageFromFile`` gives, in RGB)."""
    import numpy as np
    from PIL import Image, ImageOps
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert('RGB'))


def resize(img, height: int, width: int, interpolation: str, backend: str):
    if backend == 'pillow':
        import numpy as np
        from PIL import Image
        if interpolation not in PILLOW_FILTERS:
            raise UsageError(f'FILE.json: interpolation {interpolation!r} with Pillow: one of '
                             f'{PILLOW_FILTERS}')
        return np.asarray(Image.fromarray(img).resize(
            (width, height), getattr(Image.Resampling, interpolation.upper())))
    if backend == 'cv2':
        import cv2
        flag = getattr(cv2, CV2_FLAGS[interpolation])
        return cv2.resize(img, (width, height), interpolation=flag)
    raise UsageError(f'FILE.json: resize backend {backend!r}: pillow or cv2')


def pad(img, step: dict):
    """Bottom / right padding to ``size`` or to multiples of ``size_divisor``, with ``value``."""
    import numpy as np
    h, w = img.shape[:2]
    if 'size' in step:
        th, tw = step['size']
    else:
        d = step['size_divisor']
        th, tw = -(-h // d) * d, -(-w // d) * d
    out = np.empty((max(th, h), max(tw, w), img.shape[2]), img.dtype)
    out[...] = np.asarray(step['value'], img.dtype)
    out[:h, :w] = img
    return out


def preprocess(img, spec: dict):
    """An 8-bit RGB image -> ``(inputs (1, 3, H, W) float32, (h, w) before the padding that
    follows the normalisation)``: FILE.json's ``preprocess`` steps, in order."""
    import numpy as np
    inp = spec['input']
    if inp['channel_order'] == 'BGR':
        img = img[..., ::-1]
    size = img.shape[:2]
    for step in spec['preprocess']:
        op, h, w = step['op'], img.shape[0], img.shape[1]
        if op == 'resize':
            img = resize(img, *step['size'], step['interpolation'], step['backend'])
        elif op == 'resize_keep_ratio':
            f = min(step['max_long_edge'] / max(h, w), step['max_short_edge'] / min(h, w))
            img = resize(img, int(h * f + 0.5), int(w * f + 0.5), step['interpolation'],
                         step['backend'])
        elif op == 'resize_edge':
            s = step['size']
            width_first = {'short': w < h, 'long': w > h, 'width': True, 'height': False}
            new = (int(s * h / w), s) if width_first[step['edge']] else (s, int(s * w / h))
            img = resize(img, *new, step['interpolation'], step['backend'])
        elif op == 'center_crop':
            ch, cw = min(step['size'][0], h), min(step['size'][1], w)
            y, x = max(0, round((h - ch) / 2)), max(0, round((w - cw) / 2))
            img = img[y:y + ch, x:x + cw]
        elif op == 'pad':
            img = pad(img, step)
        elif op == 'normalize':
            img = ((img.astype(np.float32) - np.float32(inp['mean']))
                   / np.float32(inp['std']))
            size = img.shape[:2]
        else:
            raise UsageError(f'FILE.json: the test pipeline\'s {step.get("transform", op)} has no '
                             'step here: do it before this tool, or export from a config whose '
                             'test pipeline FILE.json describes')
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None]), size


def run_at_input_size(session, spec: dict, x):
    """The outputs on ``x``. A static file gets a smaller input padded (bottom / right, zeros:
    the normalised mean colour) and its spatial outputs cut back, with a note on stderr: the
    toolboxes run such an input at its own size, so the outputs differ from theirs."""
    import numpy as np
    shape = spec['input']['shape']
    h, w = x.shape[2:]
    fixed = [d if isinstance(d, int) else None for d in shape[2:]]
    if fixed[0] and fixed[1] and (h, w) != tuple(fixed):
        if h > fixed[0] or w > fixed[1]:
            raise UsageError(f'{h} x {w} input, the file takes {fixed[0]} x {fixed[1]}: export it '
                             'at the size the test pipeline gives (--shape) or with --dynamic')
        fix = ('a test pipeline whose images are at least the crop' if spec['task'] == 'segmenter'
               else 'export with --dynamic, or a test pipeline that gives the file\'s size')
        print(f'note: a {h} x {w} input padded to the file\'s {fixed[0]} x {fixed[1]}; PyTorch '
              f'runs it at its own size, so these outputs differ from its ({fix})', file=sys.stderr)
        x = pad(x[0].transpose(1, 2, 0), dict(size=fixed, value=0.)).transpose(2, 0, 1)[None]
    outputs = session.run(None, {spec['input']['name']: np.ascontiguousarray(x)})
    return [o[..., :h, :w] if spec['task'] == 'segmenter' else o for o in outputs]


def slide(session, spec: dict, x):
    """mmseg's slide inference: crops of ``crop_size`` every ``stride`` (the last one flush
    with the border), logits summed where crops overlap and divided by the count."""
    import numpy as np
    (ch, cw), (sh, sw) = spec['inference']['crop_size'], spec['inference']['stride']
    h, w = x.shape[2:]
    total, count = None, np.zeros((1, 1, h, w), np.float32)
    for i in range(max(h - ch + sh - 1, 0) // sh + 1):
        for j in range(max(w - cw + sw - 1, 0) // sw + 1):
            y2, x2 = min(i * sh + ch, h), min(j * sw + cw, w)
            y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
            logits = run_at_input_size(session, spec, x[:, :, y1:y2, x1:x2])[0]
            if total is None:
                total = np.zeros((1, logits.shape[1], h, w), np.float32)
            total[:, :, y1:y2, x1:x2] += logits
            count[:, :, y1:y2, x1:x2] += 1
    return total / count


def bilinear(a, height: int, width: int, align_corners: bool):
    """``(C, h, w)`` -> ``(C, height, width)``, as ``torch.nn.functional.interpolate(...,
    mode='bilinear')`` (no antialiasing)."""
    import numpy as np

    def taps(n_out, n_in):
        if align_corners:
            src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.)
        else:
            src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)
    y0, y1, fy = taps(height, a.shape[1])
    x0, x1, fx = taps(width, a.shape[2])
    rows = a[:, y0] * (1 - fy)[:, None] + a[:, y1] * fy[:, None]
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


def predict(session, spec: dict, path: str) -> dict:
    """One image: ``inputs`` and the file's outputs by name; a classifier's ``scores``
    (softmax), a segmenter's ``label_map`` at the image's size."""
    import numpy as np
    img = decode(path)
    x, size = preprocess(img, spec)
    if spec['inference']['mode'] == 'slide':
        outputs = [slide(session, spec, x)]
    else:
        outputs = run_at_input_size(session, spec, x)
    result = dict(inputs=x, **{o['name']: v for o, v in zip(spec['outputs'], outputs)})
    if spec['task'] == 'classifier':
        z = np.exp(outputs[0] - outputs[0].max(axis=1, keepdims=True))
        result['scores'] = z / z.sum(axis=1, keepdims=True)
    elif spec['task'] == 'segmenter':
        logits = outputs[0][0, :, :size[0], :size[1]]
        logits = bilinear(logits, *img.shape[:2], spec['inference']['align_corners'])
        result['label_map'] = logits.argmax(axis=0).astype(np.uint8)
    return result


def describe(spec: dict, result: dict, topk: int) -> str:
    import numpy as np

    def name(i):
        return spec['classes'][i] if spec.get('classes') else str(i)
    if spec['task'] == 'classifier':
        scores = result['scores'][0]
        best = np.argsort(-scores)[:topk]
        return ', '.join(f'{name(i)} {scores[i]:.3f}' for i in best)
    if spec['task'] == 'segmenter':
        counts = np.bincount(result['label_map'].ravel())
        share = counts / counts.sum()
        return 'pixels: ' + ', '.join(f'{name(i)} {100 * share[i]:.1f} %'
                                      for i in np.argsort(-share) if counts[i])
    return ', '.join(f'{o["name"]} {tuple(result[o["name"]].shape)}' for o in spec['outputs'])


def main(argv=None):
    args = parse_args(argv)
    require_file(args.onnx, 'FILE', 'Give a file tools/deploy/export.py wrote.')
    for image in args.images:
        require_file(image, 'IMAGE')
    spec = load_spec(args.onnx)
    import numpy as np
    import onnxruntime as ort
    from PIL import Image
    session = ort.InferenceSession(args.onnx, providers=['CPUExecutionProvider'])
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
    results = []
    for image in args.images:
        result = predict(session, spec, image)
        print(f'{image}: {describe(spec, result, args.topk)}')
        if args.out_dir:
            stem = osp.join(args.out_dir, osp.splitext(osp.basename(image))[0])
            np.savez(stem + '.npz', **result)
            if 'label_map' in result:
                Image.fromarray(result['label_map']).save(stem + '.png')
        results.append(result)
    if spec['task'] != 'classifier' and spec['task'] != 'segmenter':
        print('the boxes: addp_mm.apis.export.detect_with_onnx_features runs the detector\'s '
              'PyTorch heads on these features')
    return results


if __name__ == '__main__':
    run_tool(main)
