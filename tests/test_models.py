"""fkd.models: every family maps [B,1,96,96] -> [B,30], layer sizes, weights files, soft-argmax."""
import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

from fkd.core.errors import FkdError
from fkd.model.nets import (
    HeatmapModel,
    SeedCNN,
    build_model,
    count_parameters,
    soft_argmax,
    to_normalised,
    to_pixels,
)

FAMILIES = [
    ("lenet", {}),
    ("seedcnn", {}),
    ("convnet", {"widths": [8, 16], "downsample": 2}),
    ("convnet", {"widths": [8, 16], "stem": 4}),
    ("timm:test_resnet", {}),
    ("timm:test_resnet", {"drop_stem_pool": True, "dropout": 0.1}),
    ("heatmap:test_resnet", {}),
    ("heatmap:test_resnet", {"stride": 8, "drop_stem_pool": True}),
    ("heatmap:test_efficientnet", {"stride": 8, "fuse": False}),
    ("heatmap:convnet", {"widths": [8, 16, 32], "downsample": 2}),
    ("heatmap:convnet", {"widths": [8, 16], "stride": 8, "stem": 4}),
]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name, options", FAMILIES)
def test_each_family_maps_images_to_30_values(name, options):
    model = build_model(name, **options)
    out = model(torch.randn(2, 1, 96, 96))
    assert out.shape == (2, 30) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert count_parameters(model) > 0
    if name.startswith("heatmap:"):
        assert isinstance(model, HeatmapModel)
        stride = options.get("stride", 4)
        assert model.heatmaps(torch.randn(2, 1, 96, 96)).shape == (2, 15, 96 // stride, 96 // stride)
        pixels = to_pixels(out)  # soft-argmax stays inside the image
        assert pixels.min() >= 0 and pixels.max() <= 95


def test_lenet_layers():
    model = build_model("lenet")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert len(linears) == 3 and linears[-1].out_features == 30
    assert model.features(torch.zeros(1, 1, 96, 96)).numel() == linears[0].in_features


def test_convnet_stem_sees_full_resolution_then_halves():
    model = build_model("convnet", widths=[8, 16], stem=4, hidden=32)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert (first.in_channels, first.out_channels) == (1, 4)
    # 96 -> stem pool 48 -> 24 -> 12: 16 channels x 12 x 12 into the first linear layer
    assert model.features(torch.zeros(1, 1, 96, 96)).shape == (1, 16, 12, 12)


def test_seedcnn_has_the_original_layer_sizes():
    model = build_model("seedcnn")
    assert isinstance(model, SeedCNN)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 4, (5, 5)), (4, 64, (3, 3)), (64, 128, (3, 3)), (128, 256, (3, 3))]
    # each conv: BatchNorm, ReLU, 2x2 max-pool, dropout 0.4
    layers = list(model.features)
    assert len(layers) == 20
    for i in range(0, 20, 5):
        conv, bn, relu, pool, drop = layers[i:i + 5]
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels
        assert isinstance(relu, nn.ReLU) and isinstance(pool, nn.MaxPool2d) and pool.kernel_size == 2
        assert isinstance(drop, nn.Dropout) and drop.p == 0.4
    assert model.features(torch.zeros(1, 1, 96, 96)).shape == (1, 256, 4, 4)  # flatten = 4096
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4096, 1024), (1024, 256), (256, 30)]
    head = list(model.head)
    assert [type(m) for m in head] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU,
                                       nn.Dropout, nn.Linear]
    assert all(m.p == 0.4 for m in head if isinstance(m, nn.Dropout))
    assert build_model("seedcnn", dropout=0.1).head[3].p == 0.1


def test_drop_stem_pool_doubles_the_final_map():
    x = torch.zeros(1, 1, 96, 96)
    plain = build_model("timm:resnet18")
    dropped = build_model("timm:resnet18", drop_stem_pool=True)
    assert plain.forward_features(x).shape[-2:] == (3, 3)
    assert dropped.forward_features(x).shape[-2:] == (6, 6)
    assert isinstance(dropped.maxpool, nn.Identity) and not isinstance(plain.maxpool, nn.Identity)
    assert dropped(x).shape == (1, 30)
    # heatmap: stride-4 map is still 24x24 (taken one stage earlier)
    assert build_model("heatmap:test_resnet", drop_stem_pool=True).heatmaps(x).shape[-1] == 24
    # no stem pool in the family: a warning, the model unchanged
    with pytest.warns(UserWarning, match="no stem max-pool"):
        model = build_model("timm:test_efficientnet", drop_stem_pool=True)
    assert model.forward_features(x).shape[-1] == 3


def test_local_weights_file_round_trip(tmp_path):
    source = timm.create_model("test_resnet", in_chans=1, num_classes=30)
    path = tmp_path / "test_resnet.pth"
    torch.save(source.state_dict(), path)
    model = build_model("timm:test_resnet", weights=str(path))
    loaded = model.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):  # a pretrained classifier of another size (1000) is dropped
            assert torch.equal(loaded[key], value), key
    heatmap = build_model("heatmap:test_resnet", weights=path)
    assert torch.equal(heatmap.backbone.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_rgb_weights_are_adapted_to_one_channel(tmp_path):
    from safetensors.torch import save_file

    source = timm.create_model("test_resnet")  # 3 channels, 1000 classes: a stand-in for ImageNet weights
    path = tmp_path / "rgb.safetensors"
    save_file(source.state_dict(), str(path))
    model = build_model("timm:test_resnet", weights=path, drop_stem_pool=True)
    first = model.conv1[0].weight
    assert first.shape[1] == 1
    torch.testing.assert_close(first, source.conv1[0].weight.sum(1, keepdim=True))  # timm's own adaptation
    assert torch.equal(model.layer2[0].conv1.weight, source.layer2[0].conv1.weight)


def test_bad_weights_and_names_are_fkd_errors(tmp_path):
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(FkdError, match="weights.pth"):
        build_model("timm:test_resnet", weights=str(missing))
    with pytest.raises(FkdError, match="weights.pth"):
        build_model("heatmap:test_resnet", weights=str(missing))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(FkdError, match="junk.pth"):
        build_model("timm:test_resnet", weights=junk)
    for name in ("resnet18", "timm:no_such_net", "heatmap:no_such_net", "timm:", "lenet:x"):
        with pytest.raises(FkdError):
            build_model(name)
    with pytest.raises(FkdError, match="stride"):
        build_model("heatmap:test_resnet", stride=16)
    with pytest.raises(FkdError, match="strides \\[4, 8\\], not 16"):
        build_model("heatmap:convnet", widths=[8, 16], downsample=2, stride=16)
    with pytest.raises(FkdError):
        build_model("lenet", weights="x.pth")
    with pytest.raises(FkdError, match="rejected an option"):
        build_model("timm:test_resnet", no_such_option=1)


@pytest.mark.parametrize("size", [24, 12])
def test_soft_argmax_finds_a_single_peak(size):
    stride = 96 // size
    heatmaps = torch.zeros(2, 15, size, size)
    rng = np.random.default_rng(0)
    cells = rng.integers(0, size, (2, 15, 2))
    for b in range(2):
        for p in range(15):
            heatmaps[b, p, cells[b, p, 1], cells[b, p, 0]] = 60.0
    pixels = to_pixels(soft_argmax(heatmaps)).view(2, 15, 2).numpy()
    expected = cells * stride + (stride - 1) / 2  # the cell's centre pixel
    np.testing.assert_allclose(pixels, expected, atol=0.1)


def test_soft_argmax_is_sub_pixel():
    size, stride = 24, 4
    target = np.array([37.3, 52.8])  # pixels
    centre = (target - (stride - 1) / 2) / stride  # in cells
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    logits = -((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * 1.0**2)
    pixels = to_pixels(soft_argmax(logits.expand(1, 15, size, size)))
    np.testing.assert_allclose(pixels.view(15, 2).numpy(), np.tile(target, (15, 1)), atol=0.1)


def test_pixel_mapping():
    assert to_pixels(torch.zeros(3)).tolist() == [48.0] * 3
    assert to_pixels(np.array([-1.0, 1.0])).tolist() == [0.0, 96.0]
    pixels = np.array([0.0, 12.5, 95.0])
    np.testing.assert_allclose(to_pixels(to_normalised(pixels)), pixels)


@pytest.mark.parametrize("name, options, lr", [
    ("lenet", {}, 3e-4),
    ("seedcnn", {"dropout": 0.0}, 3e-4),
    ("timm:test_resnet", {}, 3e-3),
    ("heatmap:test_resnet", {}, 3e-3),
    ("heatmap:convnet", {"widths": [8, 16, 32], "downsample": 2}, 3e-3),
])
def test_models_can_learn(name, options, lr):
    images = torch.randn(4, 1, 96, 96)
    targets = torch.rand(4, 30) * 0.6 - 0.1
    model = build_model(name, **options)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.mse_loss(model(images), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_convnet_checkpoints_keep_their_layer_names():
    """ConvNet and heatmap:convnet share conv_stages; ConvNet's state names stay features.N (old runs load)."""
    names = list(build_model("convnet", widths=[8, 16], stem=4).state_dict())
    assert names[:2] == ["features.0.weight", "features.1.weight"] and "features.4.weight" in names
    heatmap = build_model("heatmap:convnet", widths=[8, 16], stem=4, stride=4)  # maps at 2, 4, 8
    assert [m.shape[1] for m in heatmap.backbone(torch.zeros(1, 1, 96, 96))] == [8, 16]
