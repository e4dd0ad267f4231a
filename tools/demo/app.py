"""A local page to try a pretrained ADDP model in the browser: generate, inpaint a region drawn on
an uploaded image, outpaint, vary an image, watch the denoising steps, and run detection / segmentation /
classification models on an uploaded image through their toolbox's own inferencer.

    python tools/demo/app.py CONFIG CHECKPOINT [--port 7860] [--host 127.0.0.1]
        [--device cpu|cuda] [--infer CONFIG [CHECKPOINT]] ... [--cfg-options k=v ...] [--debug]

CONFIG and CHECKPOINT are those of tools/generate.py and tools/edit.py (a generation or ADDP
pretraining config; the released addp-vit-*-16.pth or a full checkpoint of our pretraining).
Each ``--infer CONFIG [CHECKPOINT]`` adds a model of tools/infer.py to the page's recognition tab
(repeat it for several). The page is served by Flask from this machine only (``--host``
127.0.0.1 unless told otherwise) and loads nothing from elsewhere; Ctrl+C stops it.

The page talks to the server through a small JSON API (``POST /api/generate``, ``/api/inpaint``,
``/api/outpaint``, ``/api/variations``, ``/api/infer``; ``GET /api/info``): images go up as files
of a form and come back as PNG data URLs, next to the token ids of each result. A mistake in what
is sent (a file that is not an image, an empty mask, a value out of range) comes back as
``{"error": ...}`` with status 400 and the page shows it; the server keeps serving.
"""
import argparse
import base64
import io
import os
import os.path as osp
import sys
import tempfile
import threading
import time
import traceback

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, TOOLS)  # tools/cli.py, tools/infer.py
from cli import (  # noqa: E402
    ROOT, UsageError, add_debug_flag, before_heavy_imports, require_config, require_file,
    require_generation_checkpoint, run_tool)

PAGE = osp.join(osp.dirname(osp.abspath(__file__)), 'page.html')
DEFAULT_PORT = 7860
MAX_STEPS = 256  # the longest schedule of the released configs
MAX_UPLOAD_MB = 32
MAX_OUTPAINT_TOKENS = 8  # per side, in tokens: the page's canvas at most doubles or so


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Serve a local page to generate, inpaint and outpaint with a pretrained ADDP '
                    'model and to run detection / segmentation / classification models on images')
    p.add_argument('config', help='generation or ADDP pretraining config')
    p.add_argument('checkpoint', help='released ADDP checkpoint (addp-vit-*-16.pth) or a full one '
                   'of our pretraining (work_dirs/<config name>/iter_N.pth, not backbone.pth)')
    p.add_argument('--port', type=int, default=DEFAULT_PORT,
                   help=f'TCP port of the page (default {DEFAULT_PORT})')
    p.add_argument('--host', default='127.0.0.1',
                   help='address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 '
                        'makes the page reachable from the network)')
    p.add_argument('--device', help='default: cuda when available, else cpu')
    p.add_argument('--infer', nargs='+', action='append', default=[],
                   metavar=('CONFIG', 'CHECKPOINT'),
                   help='a detection, segmentation or classification config and its checkpoint '
                        '(as tools/infer.py; without a checkpoint the model is untrained) for '
                        'the recognition tab; repeat for several')
    p.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE',
                   help='override entries of the ADDP config, e.g. '
                        'model.target_generator.tokenizer.checkpoint=PATH')
    add_debug_flag(p)
    args = p.parse_args(argv)
    for entry in args.infer:
        if len(entry) > 2:
            p.error(f'--infer takes CONFIG [CHECKPOINT], got {len(entry)} values: '
                    f'{" ".join(entry)} (repeat --infer for another model)')
    if not 0 < args.port < 65536:
        p.error(f'--port {args.port}: give a port from 1 to 65535')
    return args


# ---------------------------------------------------------------------------------------------
# what the page's buttons do, without the web server
# ---------------------------------------------------------------------------------------------
def form_number(form, name: str, kind=float, default=None, low=None, high=None):
    """The form field ``name`` as ``kind`` (``default`` when empty or absent), within ``[low,
    high]``; anything else is a UsageError naming the field."""
    text = str(form.get(name, '') or '').strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        what = 'a whole number' if kind is int else 'a number'
        raise UsageError(f'{name}: {text!r} is not {what}') from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise UsageError(f'{name}: {value} is out of range, give a value from {low} to {high}')
    return value


def png_data_url(image) -> str:
    """A uint8 ``3 x H x W`` tensor (or ``H x W x 3`` array) as a ``data:image/png`` URL."""
    import numpy as np
    from PIL import Image
    array = image.permute(1, 2, 0).cpu().numpy() if hasattr(image, 'permute') else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format='PNG')
    return 'data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode()


def uploaded_image(files, name: str = 'image', mode: str = 'RGB'):
    """The uploaded file ``name`` of the request as a PIL image in ``mode``: a missing upload or
    a file Pillow cannot read is a UsageError naming it."""
    from addp_mm.apis import edit
    file = files.get(name) if files is not None else None
    if file is None or not file.filename:
        raise UsageError(f'no {name} uploaded: choose an image file first')
    return edit.open_image(io.BytesIO(file.read()), mode, f"the {name} '{file.filename}'")


def difference(a, b, gain: float = 4.):
    """uint8 ``3 x H x W``: ``|a - b|`` (float images in [0, 1]) averaged over the colours,
    times ``gain``, grey (black = equal)."""
    from addp_mm.models.utils import to_uint8
    diff = ((a.float() - b.float()).abs().mean(0, keepdim=True) * gain).expand(3, -1, -1)
    return to_uint8(diff)


class Demo:
    """The ADDP model, its sampler settings and the recognition models behind the page; one
    request computes at a time (``lock``)."""

    def __init__(self, config: str, checkpoint: str, device=None, cfg_options=None,
                 infer=()):
        import torch

        from addp_mm.apis import build_generation_model, edit, init_inferencer
        from addp_mm.models.generation import build_sampler
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            raise UsageError(f'--device {device}: this machine has no CUDA device; run with '
                             '--device cpu')
        self.config, self.checkpoint = config, checkpoint
        self.model, cfg = build_generation_model(config, checkpoint, self.device, cfg_options)
        self.sampler_cfg = cfg.get('sampler')
        self.defaults = build_sampler(self.sampler_cfg)
        self.canvas = edit.canvas_size(self.model)
        self.factor = edit.token_factor(self.model)
        self.recognizers = []
        for entry in infer:
            rec_config, rec_checkpoint = entry[0], (entry[1] if len(entry) > 1 else None)
            inferencer = init_inferencer(rec_config, rec_checkpoint, str(self.device))
            self.recognizers.append(dict(
                name=osp.splitext(osp.basename(rec_config))[0], checkpoint=rec_checkpoint,
                toolbox=inferencer.toolbox, inferencer=inferencer))
        self.lock = threading.Lock()

    def info(self, form=None, files=None) -> dict:
        d = self.defaults
        return dict(
            config=self.config, checkpoint=self.checkpoint, device=str(self.device),
            canvas=list(self.canvas), token_px=self.factor,
            grid=[s // self.factor for s in self.canvas],
            sampler=dict(steps=d.num_steps, schedule=d.schedule, temperature=d.choice_temperature,
                         top_p=d.top_p, max_steps=MAX_STEPS),
            max_outpaint_px=MAX_OUTPAINT_TOKENS * self.factor,
            recognizers=[dict(name=r['name'], toolbox=r['toolbox'],
                              checkpoint=r['checkpoint'] or 'none (untrained)')
                         for r in self.recognizers])

    def sampler(self, form):
        """The config's sampler with the page's steps, schedule, temperature and top-p (the
        sampler refuses values it cannot take)."""
        from addp_mm.models.generation import build_sampler
        return build_sampler(
            self.sampler_cfg,
            num_steps=form_number(form, 'steps', int, self.defaults.num_steps, 1, MAX_STEPS),
            schedule=str(form.get('schedule') or '').strip() or None,
            choice_temperature=form_number(form, 'temperature', float,
                                           self.defaults.choice_temperature),
            top_p=form_number(form, 'top_p', float, self.defaults.top_p))

    def generate(self, form, files=None) -> dict:
        from addp_mm.apis import edit
        from addp_mm.models.utils import to_uint8
        sampler = self.sampler(form)
        seed = form_number(form, 'seed', int, 0, 0, 2 ** 31 - 1)
        pictures = edit.TrajectoryPictures(self.factor)
        with self.lock:
            start = time.perf_counter()
            images = sampler.sample(self.model, 1, seed=seed, on_step=pictures)
            seconds = time.perf_counter() - start
        return dict(image=png_data_url(to_uint8(images[0])),
                    trajectory=png_data_url(pictures.strip(0)), seed=seed, sampler=repr(sampler),
                    seconds=round(seconds, 2), notes=[])

    def _canvas_image(self, files, notes):
        """The uploaded image on the model's canvas (``1 x 3 x H x W``) and its own size."""
        from addp_mm.apis import edit
        image = uploaded_image(files)
        given_hw = (image.height, image.width)
        if given_hw != tuple(self.canvas):
            notes.append(f'the image is {given_hw[1]}x{given_hw[0]}: resized to the model\'s '
                         f'{self.canvas[1]}x{self.canvas[0]} canvas')
        return edit.load_image(image, self.canvas), given_hw

    def _edit(self, form, action, notes) -> dict:
        """Run ``action(sampler, seed, pictures)`` (an edit of ``image``) and describe it for
        the page: the input with the region marked, the input's VQ reconstruction (the canvas's
        own tokens decoded), the result, their difference, the steps and the token ids."""
        import torch

        from addp_mm.apis import edit
        from addp_mm.models.utils import to_uint8
        sampler = self.sampler(form)
        seed = form_number(form, 'seed', int, 0, 0, 2 ** 31 - 1)
        pictures = edit.TrajectoryPictures(self.factor)
        with self.lock:
            start = time.perf_counter()
            result = action(sampler, seed, pictures)
            seconds = time.perf_counter() - start
            own, grid = edit.encode_tokens(self.model, result.canvas)
            # the tokens the edit keeps, and the canvas's own ones where it generates
            unknown = result.unknown[:1].to(own.device)
            given = torch.where(unknown, own, result.input_tokens.to(own.device))
            reconstruction = edit.reconstruct(self.model, given, grid)[0].cpu()
        image_out = result.images[0].cpu()
        known = ~result.unknown[0].cpu()
        tokens, given = result.tokens[0].cpu(), given[0].cpu()
        return dict(
            input=png_data_url(edit.mark_region(to_uint8(result.canvas.cpu())[0],
                                                result.region_pixels[0])),
            reconstruction=png_data_url(to_uint8(reconstruction)),
            image=png_data_url(to_uint8(image_out)),
            difference=png_data_url(difference(image_out.clamp(0, 1),
                                               reconstruction.clamp(0, 1))),
            trajectory=png_data_url(pictures.strip(0)), seed=seed, sampler=repr(sampler),
            seconds=round(seconds, 2), grid=list(grid), tokens=tokens.tolist(),
            input_tokens=given.tolist(), unknown=result.unknown[0].int().tolist(),
            known=int(known.sum()), kept=int((tokens[known] == given[known]).sum()),
            notes=notes + list(result.notes))

    def inpaint(self, form, files) -> dict:
        from addp_mm.apis import edit
        notes = []
        image, given_hw = self._canvas_image(files, notes)
        mask = uploaded_image(files, 'mask', 'L')
        region = edit.mask_region(self.model, mask, given_hw, self.canvas, 'the mask')
        return self._edit(form, lambda sampler, seed, pictures: edit.inpaint(
            self.model, sampler, image, region, seed=seed, on_step=pictures), notes)

    def outpaint(self, form, files) -> dict:
        from addp_mm.apis import edit
        notes = []
        image, _ = self._canvas_image(files, notes)
        most = MAX_OUTPAINT_TOKENS * self.factor
        pads = [form_number(form, side, int, 0, 0, most)
                for side in ('left', 'top', 'right', 'bottom')]
        return self._edit(form, lambda sampler, seed, pictures: edit.outpaint(
            self.model, sampler, image, pads, seed=seed, on_step=pictures), notes)

    def variations(self, form, files) -> dict:
        from addp_mm.apis import edit
        notes = []
        image, _ = self._canvas_image(files, notes)
        ratio = form_number(form, 'ratio', float, 0.3, 0.01, 0.99)
        return self._edit(form, lambda sampler, seed, pictures: edit.variations(
            self.model, sampler, image, 1, ratio, seed=seed, on_step=pictures), notes)

    def infer(self, form, files) -> dict:
        import mmengine
        import numpy as np
        from infer import summary
        from PIL import Image

        from addp_mm.apis.inference import PRED_DIR, VIS_DIR, run_inference
        if not self.recognizers:
            raise UsageError('no recognition model: start the demo with --infer CONFIG '
                             '[CHECKPOINT]')
        index = form_number(form, 'model', int, 0, 0, len(self.recognizers) - 1)
        score_thr = form_number(form, 'score_thr', float, 0.3, 0, 1)
        recognizer = self.recognizers[index]
        image = uploaded_image(files)
        with tempfile.TemporaryDirectory() as tmp:
            path = osp.join(tmp, 'image.png')
            image.save(path)
            with self.lock:
                start = time.perf_counter()
                result = run_inference(recognizer['inferencer'], [path], tmp,
                                       score_thr=score_thr)
                seconds = time.perf_counter() - start
            prediction = result['predictions'][0]
            with Image.open(osp.join(tmp, VIS_DIR, os.listdir(osp.join(tmp, VIS_DIR))[0])) as f:
                drawing = np.asarray(f.convert('RGB'))
            if recognizer['toolbox'] == 'mmseg':  # the class of every pixel: counted here
                labels, counts = np.unique(prediction, return_counts=True)
                shown = dict(classes=labels.tolist(), pixels=counts.tolist(),
                             size=list(prediction.shape))
            else:
                shown = mmengine.load(osp.join(tmp, PRED_DIR, 'image.json'))
        return dict(vis=png_data_url(drawing), input=png_data_url(np.asarray(image)),
                    summary=summary(recognizer['toolbox'], prediction, score_thr),
                    prediction=shown, model=recognizer['name'], toolbox=recognizer['toolbox'],
                    seconds=round(seconds, 2), notes=[])


# ---------------------------------------------------------------------------------------------
# the web server
# ---------------------------------------------------------------------------------------------
def make_app(demo: Demo):
    """The Flask app of the page and its JSON API around ``demo``."""
    from flask import Flask, jsonify, request
    from werkzeug.exceptions import HTTPException

    app = Flask('addp_demo')
    app.config['MAX_CONTENT_LENGTH'] = MAX_UPLOAD_MB * 1024 * 1024

    @app.get('/')
    def page():
        with open(PAGE, encoding='utf-8') as f:
            return f.read(), 200, {'Content-Type': 'text/html; charset=utf-8'}

    @app.get('/api/info')
    def info():
        return jsonify(demo.info())

    def route(name, action):
        def handle():
            return jsonify(action(request.form, request.files))
        app.add_url_rule(f'/api/{name}', name, handle, methods=['POST'])

    for name in ('generate', 'inpaint', 'outpaint', 'variations', 'infer'):
        route(name, getattr(demo, name))

    @app.errorhandler(UsageError)
    def mistake(error):
        return jsonify(error=' '.join(str(error).split())), 400

    @app.errorhandler(HTTPException)
    def http_error(error):
        if error.code == 413:
            message = f'the upload is larger than {MAX_UPLOAD_MB} MB: send a smaller image'
        else:
            message = f'{error.code} {error.name}: {error.description}'
        return jsonify(error=message), error.code

    @app.errorhandler(Exception)
    def bug(error):
        traceback.print_exc()
        return jsonify(error=f'internal error ({type(error).__name__}: {error}); the server '
                             'log has the traceback'), 500

    return app


def check_address(host: str, port: int) -> None:
    """A UsageError now, before the models load, when nothing can listen on ``host:port``."""
    import socket
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind((host, port))
    except OSError as e:  # taken, or not an address of this machine
        raise UsageError(f'cannot listen on --host {host} --port {port} ({e.strerror or e}): '
                         'choose another --port, or stop what uses it') from None


def main(argv=None):
    args = parse_args(argv)
    check_address(args.host, args.port)
    config = require_config(args.config)
    require_generation_checkpoint(args.checkpoint)
    for entry in args.infer:
        require_config(entry[0])
        if len(entry) == 2:
            require_file(entry[1], '--infer checkpoint',
                         'Give a checkpoint your training wrote (work_dirs/<config '
                         'name>/epoch_N.pth or iter_N.pth).')
    before_heavy_imports()
    sys.path.insert(0, ROOT)  # run from a checkout
    from addp_mm.engine.config import cfg_options_dict
    demo = Demo(config, args.checkpoint, args.device, cfg_options_dict(args.cfg_options),
                args.infer)
    app = make_app(demo)
    if args.host not in ('127.0.0.1', 'localhost', '::1'):
        print(f'note: --host {args.host}: the page is reachable from other machines',
              file=sys.stderr)
    shown = f'[{args.host}]' if ':' in args.host else args.host
    print(f'ADDP demo: {config} on {demo.device}, {demo.canvas[1]}x{demo.canvas[0]} canvas, '
          f'{len(demo.recognizers)} recognition model(s); open http://{shown}:{args.port}/ '
          '(Ctrl+C stops it)', flush=True)
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
    return 0


if __name__ == '__main__':
    run_tool(main)
