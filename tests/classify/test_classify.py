"""Field means, grouped-split CatBoost training and field classification on synthetic embeddings."""

from __future__ import annotations

import json

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer

from tilepipe.classify.metrics import classification_report, knn_predict
from tilepipe.classify.predict import classify_fields, write_class_raster
from tilepipe.classify.samples import field_embedding_means, field_embedding_stats
from tilepipe.classify.train import catboost_task_type, train_classifier
from tilepipe.core.errors import InputError, ModelError

from ..cog import assert_valid_cog

TILE, CRS, DIM = "33UXP", "EPSG:32633", 16
CLASSES = ("maize", "wheat", "grassland")
ORIGIN = (600000.0, 5400000.0)
FIELD_PX, GAP_PX, PER_SIDE = 16, 4, 6  # 36 square fields of 16 x 16 pixels


def field_boxes():
    """Field polygons in UTM (metres), row-major, with their class."""
    x0, y0 = ORIGIN
    boxes, classes = [], []
    step = (FIELD_PX + GAP_PX) * 10
    for r in range(PER_SIDE):
        for c in range(PER_SIDE):
            left, top = x0 + c * step + 20, y0 - r * step - 20
            boxes.append(shapely.box(left, top - FIELD_PX * 10, left + FIELD_PX * 10, top))
            classes.append(CLASSES[(r * PER_SIDE + c) % len(CLASSES)])
    return boxes, classes


def write_embeddings(path, seed=0, noise=0.6):
    """Class centroid + noise inside each field, NaN between fields."""
    rng = np.random.default_rng(seed)
    centroids = np.random.default_rng(99).normal(0, 1, size=(len(CLASSES), DIM))
    size = PER_SIDE * (FIELD_PX + GAP_PX) + 4
    transform = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    data = np.full((DIM, size, size), np.nan, dtype=np.float32)
    boxes, classes = field_boxes()
    for geom, cls in zip(boxes, classes, strict=True):
        left, _, _, top = geom.bounds
        c0, r0 = ~transform @ (left, top)
        c0, r0 = round(c0), round(r0)
        vec = centroids[CLASSES.index(cls)][:, None, None]
        data[:, r0 : r0 + FIELD_PX, c0 : c0 + FIELD_PX] = vec + rng.normal(
            0, noise, size=(DIM, FIELD_PX, FIELD_PX)
        )
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=DIM,
        dtype="float32",
        crs=CRS,
        transform=transform,
        nodata=np.nan,
    ) as dst:
        dst.write(data)
    return data


def write_labels(path, boxes, classes, ids):
    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform
    geoms = shapely.transform(
        np.array(boxes, dtype=object), lambda xy: np.column_stack(to_ll(xy[:, 0], xy[:, 1]))
    )
    pyogrio.raw.write(
        path,
        shapely.to_wkb(geoms),
        [np.asarray(ids, np.int64), np.array(classes, object), np.array([TILE] * len(ids), object)],
        ["field_id", "crop", "tile"],
        layer="labels",
        driver="GPKG",
        geometry_type="Polygon",
        crs="EPSG:4326",
    )


def write_fields(path, boxes):
    n = len(boxes)
    pyogrio.raw.write(
        path,
        shapely.to_wkb(np.array(boxes, dtype=object)),
        [
            np.arange(1, n + 1, dtype=np.int64),
            np.array([b.area for b in boxes]),
            np.full(n, 0.8),
            np.array([TILE] * n, object),
            np.array(["2022-06-21"] * n, object),
        ],
        ["field_id", "area_m2", "score", "tile", "date"],
        layer="fields",
        driver="GPKG",
        geometry_type="Polygon",
        crs=CRS,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    write_embeddings(root / "emb.tif")
    boxes, classes = field_boxes()
    write_labels(root / "labels.gpkg", boxes, classes, range(101, 101 + len(boxes)))
    metrics = train_classifier(
        root / "labels.gpkg",
        {TILE: str(root / "emb.tif")},
        root / "model.cbm",
        root / "metrics.json",
        iterations=40,
        max_pixels_per_field=60,
    )
    return root, metrics


def test_field_means_average_finite_pixels_inside_each_field(tmp_path):
    data = write_embeddings(tmp_path / "emb.tif")
    boxes, _ = field_boxes()
    outside = shapely.box(0, 0, 10, 10)
    means, n_pixels = field_embedding_means([boxes[0], outside], CRS, tmp_path / "emb.tif")
    assert n_pixels.tolist() == [FIELD_PX * FIELD_PX, 0]
    expected = data[:, 2 : 2 + FIELD_PX, 2 : 2 + FIELD_PX].reshape(DIM, -1).mean(axis=1)
    np.testing.assert_allclose(means[0], expected, rtol=1e-5)
    assert np.isnan(means[1]).all()


def test_training_reaches_high_macro_f1(trained):
    _, metrics = trained
    assert metrics["pixel_macro_f1"] > 0.9
    assert metrics["field_macro_f1"] > 0.9
    assert metrics["macro_f1"] == metrics["field_macro_f1"]
    assert metrics["classes"] == sorted(CLASSES)


def test_training_split_is_grouped_by_field(trained):
    _, metrics = trained
    train, test = set(metrics["train_field_ids"]), set(metrics["test_field_ids"])
    assert train and test and not train & test
    assert all(
        c["train_fields"] > 0 and c["test_fields"] > 0 for c in metrics["per_class_counts"].values()
    )
    assert metrics["n_pixels"]["train"] <= 60 * len(train)


def test_training_writes_model_and_metrics(trained):
    root, metrics = trained
    assert (root / "model.cbm").stat().st_size > 0
    assert (
        json.loads((root / "metrics.json").read_text())["test_field_ids"]
        == metrics["test_field_ids"]
    )


def test_empty_labels_raise_input_error(tmp_path):
    write_embeddings(tmp_path / "emb.tif")
    write_labels(tmp_path / "labels.gpkg", [], [], [])
    with pytest.raises(InputError, match="no labelled fields"):
        train_classifier(
            tmp_path / "labels.gpkg",
            {TILE: str(tmp_path / "emb.tif")},
            tmp_path / "m.cbm",
            tmp_path / "m.json",
            iterations=5,
        )


def test_labels_without_embedding_pixels_raise_input_error(tmp_path):
    write_embeddings(tmp_path / "emb.tif")
    boxes, classes = field_boxes()
    write_labels(tmp_path / "labels.gpkg", boxes, classes, range(len(boxes)))
    with pytest.raises(InputError, match="no training samples"):
        train_classifier(
            tmp_path / "labels.gpkg",
            {"31UFS": str(tmp_path / "emb.tif")},
            tmp_path / "m.cbm",
            tmp_path / "m.json",
            iterations=5,
        )


def test_classify_fields_adds_crop_and_probability(trained, tmp_path):
    root, _ = trained
    boxes, classes = field_boxes()
    write_fields(tmp_path / "fields.gpkg", [*boxes, shapely.box(0, 0, 100, 100)])
    dst = tmp_path / "fields_classified.gpkg"
    n = classify_fields(tmp_path / "fields.gpkg", root / "emb.tif", root / "model.cbm", dst)
    assert n == len(boxes) + 1
    meta, _, _, data = pyogrio.raw.read(dst, layer="fields")
    cols = dict(zip(meta["fields"], data, strict=True))
    assert list(meta["fields"]) == [
        "field_id",
        "area_m2",
        "score",
        "tile",
        "date",
        "crop",
        "crop_prob",
    ]
    assert np.mean(cols["crop"][:-1] == np.array(classes)) > 0.9
    assert cols["crop"][-1] == "unknown" and cols["crop_prob"][-1] == 0.0
    assert ((cols["crop_prob"][:-1] > 0) & (cols["crop_prob"][:-1] <= 1)).all()


def test_classify_fields_writes_empty_layer_for_zero_fields(trained, tmp_path):
    root, _ = trained
    write_fields(tmp_path / "fields.gpkg", [])
    dst = tmp_path / "out.gpkg"
    assert classify_fields(tmp_path / "fields.gpkg", root / "emb.tif", root / "model.cbm", dst) == 0
    meta = pyogrio.read_info(dst, layer="fields")
    assert meta["features"] == 0 and {"crop", "crop_prob"} <= set(meta["fields"])


def test_metrics_hold_weighted_f1_per_class_report_and_confusion(trained):
    _, metrics = trained
    report = metrics["field_report"]
    assert metrics["weighted_f1"] == report["weighted_f1"] > 0.9
    assert set(report["per_class"]) == set(CLASSES)
    assert sum(r["support"] for r in report["per_class"].values()) == len(metrics["test_field_ids"])
    matrix = np.asarray(report["confusion"]["matrix"])
    assert matrix.sum() == len(metrics["test_field_ids"]) and np.trace(matrix) >= 0.9 * matrix.sum()


def test_knn_baseline_is_scored_on_the_same_held_out_fields(trained):
    _, metrics = trained
    base = metrics["baseline"]
    assert base["report"]["n"] == metrics["field_report"]["n"] == len(metrics["test_field_ids"])
    assert base["macro_f1"] > 0.8  # well-separated synthetic classes: kNN must do well too


def test_training_uses_balanced_class_weights_and_records_its_settings(trained):
    _, metrics = trained
    assert metrics["params"]["class_weights"] == "Balanced"
    assert metrics["params"]["task_type"] == "CPU"  # no CUDA GPU on the test machine
    assert metrics["split"] == {"kind": "field"}


def test_classification_report_on_known_predictions():
    report = classification_report(
        ["a", "a", "a", "b", "b", "c"], ["a", "a", "b", "b", "b", "a"], ["a", "b", "c"]
    )
    assert report["per_class"]["a"]["precision"] == pytest.approx(2 / 3)
    assert report["per_class"]["a"]["recall"] == pytest.approx(2 / 3)
    assert report["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert report["per_class"]["c"]["f1"] == 0.0
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)
    assert report["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 0.8) / 6)
    assert report["confusion"]["matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_knn_predict_votes_among_the_nearest_training_items():
    train_x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0]])
    train_y = np.array(["a", "a", "a", "b", "b"])
    pred = knn_predict(train_x, train_y, np.array([[0.2, 0.1], [4.9, 5.2]]), k=2, chunk=1)
    assert pred.tolist() == ["a", "b"]


def test_task_type_auto_without_cuda_is_cpu_and_explicit_values_pass_through():
    assert catboost_task_type("auto") == "CPU"  # the test machine has no CUDA GPU
    assert catboost_task_type("GPU") == "GPU"
    with pytest.raises(InputError, match="task_type"):
        catboost_task_type("TPU")


def test_spatial_hold_out_keeps_every_block_on_one_side(tmp_path):
    write_embeddings(tmp_path / "emb.tif")
    boxes, classes = field_boxes()
    write_labels(tmp_path / "labels.gpkg", boxes, classes, range(len(boxes)))
    block = 400.0  # fields every 200 m: 2 x 2 fields per block
    metrics = train_classifier(
        tmp_path / "labels.gpkg",
        {TILE: str(tmp_path / "emb.tif")},
        tmp_path / "m.cbm",
        tmp_path / "m.json",
        iterations=10,
        max_pixels_per_field=20,
        spatial_block_m=block,
    )
    side = {}
    for fid, geom in enumerate(boxes):
        key = (int(geom.centroid.x // block), int(geom.centroid.y // block))
        side.setdefault(key, set()).add(fid in metrics["test_field_ids"])
    assert all(len(v) == 1 for v in side.values())
    assert metrics["split"]["kind"] == "spatial" and metrics["split"]["test_blocks"] >= 1


def test_same_seed_gives_the_same_split_and_scores(trained, tmp_path):
    root, metrics = trained
    again = train_classifier(
        root / "labels.gpkg",
        {TILE: str(root / "emb.tif")},
        tmp_path / "model.cbm",
        tmp_path / "metrics.json",
        iterations=40,
        max_pixels_per_field=60,
    )
    assert again["test_field_ids"] == metrics["test_field_ids"]
    assert again["field_report"] == metrics["field_report"]


def test_labels_without_a_crop_class_raise_naming_the_fields(tmp_path):
    write_embeddings(tmp_path / "emb.tif")
    boxes, classes = field_boxes()
    classes[3] = ""
    write_labels(tmp_path / "labels.gpkg", boxes, classes, range(len(boxes)))
    with pytest.raises(InputError, match=r"1 labels have no crop class \(field_id \[3\]\)"):
        train_classifier(
            tmp_path / "labels.gpkg",
            {TILE: str(tmp_path / "emb.tif")},
            tmp_path / "m.cbm",
            tmp_path / "m.json",
            iterations=5,
        )


def test_labels_using_a_reserved_class_name_raise(tmp_path):
    write_embeddings(tmp_path / "emb.tif")
    boxes, classes = field_boxes()
    classes[0] = "unknown"
    write_labels(tmp_path / "labels.gpkg", boxes, classes, range(len(boxes)))
    with pytest.raises(InputError, match="reserved"):
        train_classifier(
            tmp_path / "labels.gpkg",
            {TILE: str(tmp_path / "emb.tif")},
            tmp_path / "m.cbm",
            tmp_path / "m.json",
            iterations=5,
        )


def test_field_stats_mean_and_std_match_numpy_over_the_field_pixels(tmp_path):
    data = write_embeddings(tmp_path / "emb.tif")
    boxes, _ = field_boxes()
    stats = field_embedding_stats([boxes[0]], CRS, tmp_path / "emb.tif", ("mean", "std"))
    pixels = data[:, 2 : 2 + FIELD_PX, 2 : 2 + FIELD_PX].reshape(DIM, -1)
    np.testing.assert_allclose(stats["mean"][0], pixels.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(stats["std"][0], pixels.std(axis=1), rtol=1e-4)
    assert stats["count"].tolist() == [FIELD_PX * FIELD_PX]


def test_fields_in_lon_lat_are_reprojected_into_the_embedding_crs(tmp_path):
    write_embeddings(tmp_path / "emb.tif")
    boxes, _ = field_boxes()
    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform
    lonlat = shapely.transform(
        np.array(boxes[:3], dtype=object), lambda xy: np.column_stack(to_ll(xy[:, 0], xy[:, 1]))
    )
    utm_means, _ = field_embedding_means(boxes[:3], CRS, tmp_path / "emb.tif")
    ll_means, counts = field_embedding_means(lonlat, "EPSG:4326", tmp_path / "emb.tif")
    assert counts.tolist() == [FIELD_PX * FIELD_PX] * 3
    np.testing.assert_allclose(ll_means, utm_means, rtol=1e-5)


def test_field_means_do_not_depend_on_the_window_size(tmp_path, monkeypatch):
    import tilepipe.classify.samples as samples

    write_embeddings(tmp_path / "emb.tif")
    boxes, _ = field_boxes()
    whole, whole_counts = field_embedding_means(boxes, CRS, tmp_path / "emb.tif")
    monkeypatch.setattr(samples, "_WINDOW", 24)  # windows cut through most fields
    cut, cut_counts = field_embedding_means(boxes, CRS, tmp_path / "emb.tif")
    assert cut_counts.tolist() == whole_counts.tolist() == [FIELD_PX * FIELD_PX] * len(boxes)
    np.testing.assert_allclose(cut, whole, rtol=1e-5)


def test_block_windows_tile_the_raster_once_with_clipped_edges():
    from tilepipe.classify.samples import block_windows

    covered = np.zeros((70, 50), dtype=int)
    for win in block_windows(50, 70, 32):
        covered[win.toslices()] += 1
        assert win.width <= 32 and win.height <= 32
    assert (covered == 1).all()


def test_class_raster_is_written_block_by_block_with_field_classes(trained, tmp_path, monkeypatch):
    import tilepipe.classify.predict as predict

    root, _ = trained
    monkeypatch.setattr(predict, "_WINDOW", 32)  # 124 px raster: 16 blocks
    _, classes = field_boxes()
    raster = tmp_path / "classes.tif"
    pixels = write_class_raster(root / "emb.tif", root / "model.cbm", raster, tile=TILE)
    assert sum(pixels["pixels"].values()) == len(classes) * FIELD_PX * FIELD_PX
    with rasterio.open(raster) as src:
        names = json.loads(src.tags(1)["CLASSES"])
        data = src.read(1)
        assert src.nodata == 255
    assert_valid_cog(raster)
    assert data[0, 0] == 255  # between fields: no embedding
    field = data[2 : 2 + FIELD_PX, 2 : 2 + FIELD_PX]
    assert np.mean(np.asarray(names)[field] == classes[0]) > 0.8


def test_scene_whose_qc_failed_is_kept_out_of_classification(tmp_path):
    boxes, _ = field_boxes()
    write_fields(tmp_path / "fields.gpkg", boxes[:3])
    (tmp_path / "qc.json").write_text(json.dumps({"status": "fail", "checks": []}))
    dst = tmp_path / "out.gpkg"
    n = classify_fields(
        tmp_path / "fields.gpkg",
        tmp_path / "no_embeddings.tif",  # never opened for a skipped scene
        tmp_path / "no_model.cbm",
        dst,
        qc_path=tmp_path / "qc.json",
    )
    _, _, _, data = pyogrio.raw.read(dst, layer="fields", columns=["crop", "crop_prob"])
    assert n == 3 and data[0].tolist() == ["qc_fail"] * 3 and data[1].tolist() == [0.0] * 3


def test_scene_whose_qc_warned_is_classified(trained, tmp_path):
    root, _ = trained
    boxes, classes = field_boxes()
    write_fields(tmp_path / "fields.gpkg", boxes[:3])
    (tmp_path / "qc.json").write_text(json.dumps({"status": "warn", "checks": []}))
    dst = tmp_path / "out.gpkg"
    classify_fields(
        tmp_path / "fields.gpkg",
        root / "emb.tif",
        root / "model.cbm",
        dst,
        qc_path=tmp_path / "qc.json",
    )
    _, _, _, data = pyogrio.raw.read(dst, layer="fields", columns=["crop"])
    assert data[0].tolist() == classes[:3]


def test_unreadable_qc_json_raises_naming_tile_date_and_file(tmp_path):
    boxes, _ = field_boxes()
    write_fields(tmp_path / "fields.gpkg", boxes[:1])
    (tmp_path / "qc.json").write_text("{not json")
    with pytest.raises(InputError, match=rf"tile {TILE}, date 2022-06-21, file .*qc.json"):
        classify_fields(
            tmp_path / "fields.gpkg",
            tmp_path / "e.tif",
            tmp_path / "m.cbm",
            tmp_path / "out.gpkg",
            tile=TILE,
            date="2022-06-21",
            qc_path=tmp_path / "qc.json",
        )


def test_classify_without_embeddings_for_the_tile_raises_naming_tile_date_and_file(
    trained, tmp_path
):
    root, _ = trained
    boxes, _ = field_boxes()
    write_fields(tmp_path / "fields.gpkg", boxes[:2])
    with pytest.raises(InputError, match=rf"tile {TILE}, date 2022-06-21, file .*missing.tif"):
        classify_fields(
            tmp_path / "fields.gpkg",
            tmp_path / "missing.tif",
            root / "model.cbm",
            tmp_path / "out.gpkg",
            tile=TILE,
            date="2022-06-21",
        )
    assert not (tmp_path / "out.gpkg").exists()


# issue 18, classes 1 and 3: a classifier returning NaN probabilities


@pytest.fixture
def nan_classifier(trained, tmp_path) -> str:
    """The trained classifier with every leaf value NaN: it loads, and predicts NaN."""
    from catboost import CatBoostClassifier

    root, _ = trained
    model = CatBoostClassifier()
    model.load_model(str(root / "model.cbm"))
    model.set_leaf_values(np.full_like(model.get_leaf_values(), np.nan))
    model.save_model(str(tmp_path / "nan.cbm"))
    return str(tmp_path / "nan.cbm")


def test_nan_probabilities_are_a_model_error_not_the_first_class_per_field(
    trained, nan_classifier, tmp_path
):
    root, _ = trained
    write_fields(tmp_path / "fields.gpkg", field_boxes()[0])
    dst = tmp_path / "fields_classified.gpkg"
    with pytest.raises(ModelError, match=r"tile 33UXP, .*nan.cbm: classifier returned non-finite"):
        classify_fields(
            tmp_path / "fields.gpkg", root / "emb.tif", nan_classifier, dst, tile=TILE, date="d"
        )
    assert not dst.exists()


def test_nan_probabilities_are_a_model_error_not_the_first_class_per_pixel(
    trained, nan_classifier, tmp_path
):
    root, _ = trained
    raster = tmp_path / "classes.tif"
    with pytest.raises(ModelError, match=r"non-finite probabilities for \d+ of \d+ pixels"):
        write_class_raster(root / "emb.tif", nan_classifier, raster, tile=TILE)
    assert not raster.exists()


# -- issue 18: embeddings of the wrong kind are named; the model and its metrics come together


def rewrite_embeddings(src_path, dst_path, *, dtype="float32", crs=CRS):
    """A copy of an embeddings raster in another dtype or CRS."""
    with rasterio.open(src_path) as src:
        profile, data = src.profile, src.read()
    profile.update(dtype=dtype, crs=crs, nodata=None if dtype != "float32" else profile["nodata"])
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(np.nan_to_num(data).astype(dtype))
    return dst_path


def test_classify_on_int8_embeddings_is_an_input_error_naming_the_dtype(trained, tmp_path):
    root, _ = trained
    boxes, _ = field_boxes()
    write_fields(tmp_path / "fields.gpkg", boxes[:2])
    emb = rewrite_embeddings(root / "emb.tif", tmp_path / "emb.tif", dtype="int8")
    with pytest.raises(
        InputError, match=rf"tile {TILE}, date 2022-06-21, file .*emb\.tif: .*found int8"
    ):
        classify_fields(
            tmp_path / "fields.gpkg",
            emb,
            root / "model.cbm",
            tmp_path / "out.gpkg",
            tile=TILE,
            date="2022-06-21",
        )
    assert not (tmp_path / "out.gpkg").exists()


def test_class_raster_on_embeddings_of_another_tile_is_an_input_error(trained, tmp_path):
    root, _ = trained
    emb = rewrite_embeddings(root / "emb.tif", tmp_path / "emb.tif", crs="EPSG:32632")
    with pytest.raises(
        InputError, match=r"expected CRS EPSG:32633 of tile 33UXP, found EPSG:32632"
    ):
        write_class_raster(emb, root / "model.cbm", tmp_path / "classes.tif", tile=TILE)
    assert not (tmp_path / "classes.tif").exists()


def test_training_writes_model_and_metrics_together_or_not_at_all(trained, tmp_path):
    root, _ = trained
    metrics = tmp_path / "metrics.json"
    metrics.mkdir()  # the metrics cannot be put in place: the model must not stay either
    with pytest.raises(OSError):
        train_classifier(
            root / "labels.gpkg",
            {TILE: str(root / "emb.tif")},
            tmp_path / "model.cbm",
            metrics,
            iterations=5,
        )
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
