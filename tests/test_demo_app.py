"""The browser demo (``tools/demo/app.py``) in a real browser: the server started on a free
localhost port with a tiny random ADDP model and the demo detector, a headless Chromium (Debian's
``chromium``, driven by Playwright) generates with two seeds, inpaints a region painted with the
mouse, outpaints, varies an image, runs the detector, gets a message for each bad input while the server keeps
serving, and the page loads nothing from elsewhere. The JSON API's messages for the mistakes a
page cannot make (a mask of another size, a full mask, values out of range) are checked through
Flask's test client, in this process.

The ADDP model's weights are random: what is checked is the demo's plumbing (the known tokens come
back unchanged, the region is where the mouse painted, seeds, the inferencer's boxes), not the
pictures' quality."""
import base64
import io
import json
import os
import os.path as osp
import socket

import numpy as np
import pytest
import torch
from mmengine.registry import MODELS
from PIL import Image

from conftest import ROOT, free_port, on_ci, require, serving, tool
from test_edit import TINY
from test_infer import build_model, save_checkpoint

CHROMIUM = '/usr/bin/chromium'
DETECTOR = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py')
WAIT_MS = 60_000  # the longest any click may take on a loaded machine


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """The tiny ADDP config and checkpoint (32 px canvas, 2 px tokens, 3 steps; random weights,
    the tokenizer's too), a seeded random
    checkpoint of the demo detector, a 64 px image for the edits, a 128 px image of shapes for the
    detector and a text file."""
    root = tmp_path_factory.mktemp('demo_app')
    torch.manual_seed(0)
    model = MODELS.build(TINY)
    torch.nn.init.normal_(model.neck.token_emb.weight, std=0.5)  # seeds matter
    # the tokenizer under vqgan.* as in the released files, so that every process loads it
    state = dict(model.state_dict(), **{f'vqgan.{k}': v for k, v in
                                         model.target_generator.tokenizer.state_dict().items()})
    torch.save({'state_dict': state, 'meta': {}}, root / 'addp.pth')
    (root / 'tiny.py').write_text(f'model = {TINY!r}\nsampler = dict(num_steps=3)\n')
    detector, _ = build_model(DETECTOR)
    save_checkpoint(detector, root / 'detector.pth')
    coarse = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((64, 64), Image.BILINEAR).save(root / 'photo.png')
    shapes = np.full((128, 128, 3), 30, np.uint8)
    shapes[20:60, 20:60] = (220, 60, 60)
    yy, xx = np.mgrid[:128, :128]
    shapes[(yy - 88) ** 2 + (xx - 84) ** 2 < 24 ** 2] = (60, 200, 90)
    Image.fromarray(shapes).save(root / 'shapes.png')
    (root / 'notes.txt').write_text('not an image\n')
    return root


def data_url_image(url: str) -> np.ndarray:
    assert url.startswith('data:image/png;base64,'), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(',', 1)[1]))).convert('RGB'))


def shown(page, selector: str) -> np.ndarray:
    return data_url_image(page.get_attribute(selector, 'src'))


def click_and_wait(page, selector: str) -> None:
    """Click a button that posts to the server and wait until the page has the answer."""
    done = int(page.evaluate('document.body.dataset.done'))
    page.click(selector)
    page.wait_for_function(f'Number(document.body.dataset.done) > {done}', timeout=WAIT_MS)


@pytest.mark.slow
def test_the_demo_in_a_browser(files, tmp_path):
    sync_api = require('playwright.sync_api', 'the browser test drives Chromium with Playwright')
    if not osp.exists(CHROMIUM):
        message = f'{CHROMIUM} not found: bash tools/install.sh installs Debian\'s chromium'
        if on_ci():
            pytest.fail(message + ' (CI=true: the browser test must run)', pytrace=False)
        pytest.skip(message)
    from addp_mm.apis import build_generation_model, edit

    port = free_port()
    base = f'http://127.0.0.1:{port}'
    cmd = ['python', osp.join(ROOT, 'tools', 'demo', 'app.py'), files / 'tiny.py',
           files / 'addp.pth', '--port', port, '--device', 'cpu',
           '--infer', DETECTOR, files / 'detector.pth']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    with serving(cmd, base + '/api/info', tmp_path / 'server.log', cwd=files, env=env), \
            sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=['--no-sandbox', '--no-proxy-server'])
        try:
            page = browser.new_page(viewport={'width': 1100, 'height': 900})
            requested = []
            page.on('request', lambda request: requested.append(request.url))
            page.goto(base + '/')
            page.wait_for_function('document.body.dataset.ready === "1"', timeout=WAIT_MS)
            assert 'tiny.py' in page.inner_text('#model-info')
            assert '32x32 px, 16x16 tokens of 2 px' in page.inner_text('#model-info')

            # generate: two seeds, two images; the same seed again, the same image
            images = {}
            for seed in ('0', '1', '0'):
                page.fill('#seed', seed)
                click_and_wait(page, '#generate-run')
                assert page.inner_text('#generate-error') == ''
                image = shown(page, '#generate-image')
                assert image.shape == (32, 32, 3)
                if seed in images:
                    assert np.array_equal(images[seed], image)
                images[seed] = image
            assert np.abs(images['0'].astype(int) - images['1']).mean() > 5
            strip = shown(page, '#generate-trajectory')
            assert strip.shape == (2 + 2 * 32 + 2, 2 + 3 * (32 + 2), 3)  # 3 steps

            # inpaint a region painted with the mouse on the 64 px image (shown enlarged)
            page.click('nav button[data-tab=inpaint]')
            page.fill('#seed', '0')
            page.set_input_files('#inpaint-file', str(files / 'photo.png'))
            page.wait_for_function('document.getElementById("inpaint-mask").width === 64')
            box = page.locator('#inpaint-mask').bounding_box()
            scale = box['width'] / 64
            stroke = [(12, 14), (30, 14), (30, 26)]  # image pixels; the brush is 8 px wide
            page.mouse.move(box['x'] + stroke[0][0] * scale, box['y'] + stroke[0][1] * scale)
            page.mouse.down()
            for x, y in stroke[1:]:
                page.mouse.move(box['x'] + x * scale, box['y'] + y * scale, steps=6)
            page.mouse.up()
            click_and_wait(page, '#inpaint-run')
            assert page.inner_text('#inpaint-error') == ''
            notes = page.inner_text('#inpaint-notes')
            assert "resized to the model's 32x32 canvas" in notes
            answer = json.loads(page.text_content('#inpaint-json'))
            unknown = torch.tensor(answer['unknown'], dtype=torch.bool)
            tokens = torch.tensor(answer['tokens'])
            assert answer['grid'] == [16, 16] and 0 < int(unknown.sum()) < 256
            # the region is where the mouse painted: within the stroke's box grown by the brush
            # radius, on the 32 px canvas (half the image), in 2 px tokens
            ys, xs = unknown.view(16, 16).nonzero().unbind(1)
            assert xs.min() >= (12 - 4) // 4 and xs.max() <= (30 + 4) // 4
            assert ys.min() >= (14 - 4) // 4 and ys.max() <= (26 + 4) // 4
            # the known tokens are the image's own, encoded here from the same file
            model, _ = build_generation_model(str(files / 'tiny.py'), str(files / 'addp.pth'))
            image = edit.load_image(str(files / 'photo.png'), (32, 32))
            own, grid = edit.encode_tokens(model, image)
            known = ~unknown
            assert torch.equal(tokens[known], own[0][known])
            assert (tokens[unknown] != own[0][unknown]).any()
            assert f'{int(known.sum())} of the {int(known.sum())} known tokens kept' in \
                page.inner_text('#inpaint-kept')
            # the reconstruction shown is the image's VQ reconstruction; far from the region
            # the inpainted pixels stay close to it, in the region they do not
            reconstruction = shown(page, '#inpaint-reconstruction').astype(float)
            expected = edit.reconstruct(model, own, grid)[0].clamp(0, 1).permute(1, 2, 0) * 255
            assert np.abs(reconstruction - expected.numpy()).max() <= 1.0
            inpainted = shown(page, '#inpaint-image').astype(float)
            diff = np.abs(inpainted - reconstruction).mean(-1)
            tok_y, tok_x = np.mgrid[:32, :32] // 2
            distance = np.maximum(np.maximum(ys.min().item() - tok_y, tok_y - ys.max().item()),
                                  np.maximum(xs.min().item() - tok_x, tok_x - xs.max().item()))
            inside, far = diff[distance < 0].mean(), diff[distance >= 6].mean()
            assert far < 0.2 * inside, (inside, far)

            # outpaint 6 px to the right (3 tokens): the image's tokens kept, a wider image
            page.click('nav button[data-tab=outpaint]')
            page.set_input_files('#outpaint-file', str(files / 'photo.png'))
            page.fill('#right', '6')
            click_and_wait(page, '#outpaint-run')
            assert page.inner_text('#outpaint-error') == ''
            assert shown(page, '#outpaint-image').shape == (32, 38, 3)
            assert '256 of the 256 known tokens kept' in page.inner_text('#outpaint-kept')

            # a variation re-generating 25 % of the tokens: the others are the image's own
            page.click('nav button[data-tab=variations]')
            page.set_input_files('#variations-file', str(files / 'photo.png'))
            page.fill('#ratio', '0.25')
            click_and_wait(page, '#variations-run')
            assert page.inner_text('#variations-error') == ''
            answer = json.loads(page.text_content('#variations-json'))
            unknown = torch.tensor(answer['unknown'], dtype=torch.bool)
            assert int(unknown.sum()) == 64  # a quarter of the 16 x 16 tokens
            assert torch.equal(torch.tensor(answer['tokens'])[~unknown], own[0][~unknown])
            assert '192 of the 192 known tokens kept' in page.inner_text('#variations-kept')

            # the detector through mmdet's own inferencer: boxes in its prediction, drawn
            page.click('nav button[data-tab=recognize]')
            page.set_input_files('#recognize-file', str(files / 'shapes.png'))
            page.fill('#score_thr', '0.05')
            click_and_wait(page, '#recognize-run')
            assert page.inner_text('#recognize-error') == ''
            prediction = json.loads(page.text_content('#recognize-json'))
            kept = [b for b, s in zip(prediction['bboxes'], prediction['scores']) if s >= 0.05]
            assert kept and all(len(b) == 4 for b in kept)
            assert 'boxes with a score >= 0.05' in page.inner_text('#recognize-summary')
            given = np.asarray(Image.open(files / 'shapes.png').convert('RGB'))
            drawn = shown(page, '#recognize-vis')
            assert drawn.shape == given.shape and (drawn != given).any(-1).sum() > 100
            page.screenshot(path=str(tmp_path / 'demo_recognize.png'), full_page=True)

            # bad input is a message on the page, and the server keeps serving
            page.set_input_files('#recognize-file', str(files / 'notes.txt'))
            click_and_wait(page, '#recognize-run')
            assert "the image 'notes.txt' is not an image Pillow can read" in \
                page.inner_text('#recognize-error')
            page.click('nav button[data-tab=inpaint]')
            page.click('#inpaint-clear')
            click_and_wait(page, '#inpaint-run')
            assert 'the mask is empty: nothing to generate' in page.inner_text('#inpaint-error')
            page.set_input_files('#inpaint-file', str(files / 'notes.txt'))
            click_and_wait(page, '#inpaint-run')
            assert 'is not an image Pillow can read' in page.inner_text('#inpaint-error')
            page.click('nav button[data-tab=generate]')
            page.fill('#steps', '0')
            click_and_wait(page, '#generate-run')
            assert 'steps: 0 is out of range' in page.inner_text('#generate-error')
            page.fill('#steps', '3')
            page.fill('#seed', '1')
            click_and_wait(page, '#generate-run')
            assert page.inner_text('#generate-error') == ''
            assert np.array_equal(shown(page, '#generate-image'), images['1'])
            page.screenshot(path=str(tmp_path / 'demo_generate.png'), full_page=True)
        finally:
            browser.close()
    outside = [u for u in requested if not u.startswith((base + '/', 'data:', 'blob:'))]
    assert not outside, outside  # the page loads nothing from elsewhere
    assert (tmp_path / 'demo_generate.png').stat().st_size > 10_000
    print(f'screenshots: {tmp_path / "demo_generate.png"} {tmp_path / "demo_recognize.png"}')


def test_the_api_says_each_mistake(files):
    """What a page cannot send but a script can: a message (status 400) for each mistake, and the
    server goes on."""
    require('flask', 'the demo is served by Flask')
    app_module = tool('demo.app')
    demo = app_module.Demo(str(files / 'tiny.py'), str(files / 'addp.pth'), 'cpu')
    client = app_module.make_app(demo).test_client()

    def post(name, data=None, **images):
        form = dict(data or {})
        for key, array in images.items():
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format='PNG')
            buffer.seek(0)
            form[key] = (buffer, f'{key}.png')
        response = client.post(f'/api/{name}', data=form, content_type='multipart/form-data')
        return response.status_code, response.get_json()

    photo = np.asarray(Image.open(files / 'photo.png'))
    full, half = np.full((64, 64), 255, np.uint8), np.zeros((64, 64), np.uint8)
    half[:, 32:] = 255
    cases = [
        ('inpaint', {}, dict(image=photo, mask=full[:40]),
         'the mask is 64x40 (width x height) but the image is 64x64'),
        ('inpaint', {}, dict(image=photo, mask=full), 'the mask covers the whole image'),
        ('inpaint', {}, dict(image=photo), 'no mask uploaded'),
        ('inpaint', {'seed': '-1'}, dict(image=photo, mask=half), 'seed: -1 is out of range'),
        ('generate', {'steps': 'many'}, {}, "steps: 'many' is not a whole number"),
        ('generate', {'steps': '100000'}, {}, 'steps: 100000 is out of range'),
        ('generate', {'top_p': '1.5'}, {}, 'top_p must be in (0, 1]'),
        ('generate', {'schedule': 'square'}, {}, "schedule='square'"),
        ('outpaint', {'right': '500'}, dict(image=photo), 'right: 500 is out of range'),
        ('outpaint', {}, dict(image=photo), 'at least one > 0'),
        ('variations', {'ratio': '1'}, dict(image=photo), 'ratio: 1.0 is out of range'),
        ('variations', {}, {}, 'no image uploaded'),
        ('infer', {}, dict(image=photo), 'no recognition model: start the demo with --infer'),
    ]
    for name, data, images, message in cases:
        status, answer = post(name, data, **images)
        assert status == 400 and message in answer['error'], (name, data, answer)
    status, answer = post('inpaint', {'steps': '2'}, image=photo, mask=half)
    assert status == 200 and answer['notes'] == [
        "the image is 64x64: resized to the model's 32x32 canvas"]
    assert answer['kept'] == answer['known'] == 128  # the left half's tokens, on the grid
    assert client.get('/nowhere').get_json()['error'].startswith('404 Not Found')


def test_the_command_line():
    from addp_mm.errors import UsageError
    parse = tool('demo.app').parse_args
    args = parse(['c.py', 'k.pth', '--infer', 'det.py', 'det.pth', '--infer', 'cls.py'])
    assert args.infer == [['det.py', 'det.pth'], ['cls.py']]
    assert (args.host, args.port) == ('127.0.0.1', 7860)
    for wrong in (['c.py', 'k.pth', '--infer', 'a.py', 'b.pth', 'c.pth'],
                  ['c.py', 'k.pth', '--port', '0'], ['c.py']):
        with pytest.raises(SystemExit):
            parse(wrong)
    with socket.socket() as taken:  # a port in use is one line, before any model loads
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f'cannot listen on --host 127.0.0.1 --port {port}'):
            tool('demo.app').main(['c.py', 'k.pth', '--port', str(port)])
