"""Loaders on small files the tests write in the real formats."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from crossent.data import load_dataset

CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
CIFAR_NAMES += [b"dog", b"frog", b"horse", b"ship", b"truck"]


# --------------------------------------------------------------------------- CSV


def write_csv(path, rows, header="f1,f2,label"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_csv_with_string_labels(tmp_path):
    animals = ["cat", "dog", "bird"]
    # f1 is the row number, so each loaded row can be traced back to its label
    rows = [f"{i},{(i * 7) % 5}.5,{animals[i % 3]}" for i in range(60)]
    path = write_csv(tmp_path / "pets.csv", rows)
    ds = load_dataset(f"csv:{path}", seed=0, standardize=False)
    assert ds.kind == "tabular" and ds.num_classes == 3
    assert ds.class_names == ("bird", "cat", "dog")
    assert ds.train.x.shape[1] == 2
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (39, 9, 12)
    for split in (ds.train, ds.validation, ds.test):
        for x, y in zip(split.x, split.y, strict=True):
            assert ds.class_names[int(y)] == animals[int(x[0]) % 3]
            assert float(x[1]) == (int(x[0]) * 7) % 5 + 0.5
    scaled = load_dataset(f"csv:{path}", seed=0)
    assert torch.allclose(scaled.train.x.mean(0), torch.zeros(2), atol=1e-5)


def test_csv_label_column_and_integer_labels_sort_numerically(tmp_path):
    rows = [f"{'10' if i % 2 else '2'},{i},{i * i}" for i in range(40)]
    path = write_csv(tmp_path / "t.csv", rows, header="target , a, b")
    ds = load_dataset(f"csv:{path}", label_column="target", standardize=False)
    assert ds.class_names == ("2", "10")
    for x, y in zip(ds.train.x, ds.train.y, strict=True):
        assert int(y) == int(x[0]) % 2


def test_csv_errors(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="CSV file not found"):
        load_dataset(f"csv:{missing}")
    path = write_csv(tmp_path / "a.csv", ["1,2,x", "3,4,y"] * 10)
    with pytest.raises(ValueError, match="`label_column` to name a column"):
        load_dataset(f"csv:{path}", label_column="class")
    bad = write_csv(tmp_path / "b.csv", ["1,2,x"] * 9 + ["1,hello,y"])
    with pytest.raises(ValueError, match=r"column 'f2' .* 'hello' in data row 10"):
        load_dataset(f"csv:{bad}")
    ragged = write_csv(tmp_path / "c.csv", ["1,2,x", "1,y"])
    with pytest.raises(ValueError, match="Expected 3 cells"):
        load_dataset(f"csv:{ragged}")
    with pytest.raises(ValueError, match="`csv option` to be one of"):
        load_dataset(f"csv:{path}", label="x")


# --------------------------------------------------------------------------- NPZ


def test_npz_with_official_test_split_and_class_names(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 4)), np.arange(50) % 3
    x_test, y_test = rng.normal(size=(9, 4)), np.arange(9) % 3
    path = tmp_path / "d.npz"
    names = np.array(["a", "b", "c"])
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test, class_names=names)
    ds = load_dataset(f"npz:{path}", standardize=False)
    assert ds.class_names == ("a", "b", "c") and ds.kind == "tabular"
    assert torch.allclose(ds.test.x, torch.from_numpy(x_test).float())
    assert torch.equal(ds.test.y, torch.from_numpy(y_test))
    assert (len(ds.train), len(ds.validation)) == (42, 8)  # round(0.15 * 50) = 8


def test_npz_with_keras_array_names(tmp_path):
    # keras.datasets' mnist.npz layout: x_train, y_train, x_test, y_test
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    path = tmp_path / "keras.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
    ds = load_dataset(f"npz:{path}", standardize=False)
    assert (len(ds.train) + len(ds.validation), len(ds.test)) == (40, 6)
    assert ds.num_classes == 2
    both = tmp_path / "both.npz"
    np.savez(both, x=x, y=y, y_train=y)
    with pytest.raises(ValueError, match="Expected 'y' or 'y_train'"):
        load_dataset(f"npz:{both}")


def test_npz_string_labels_images_and_errors(tmp_path):
    path = tmp_path / "img.npz"
    np.savez(path, x=np.ones((40, 1, 5, 5)), y=np.array(["yes", "no"] * 20))
    ds = load_dataset(f"npz:{path}")
    assert ds.kind == "image" and ds.class_names == ("no", "yes")
    assert ds.train.x.shape[1:] == (1, 5, 5)
    out_of_range = tmp_path / "r.npz"
    np.savez(
        out_of_range, x=np.ones((20, 2)), y=np.arange(20) % 3, class_names=np.array(["a", "b"])
    )
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\)"):
        load_dataset(f"npz:{out_of_range}")
    no_y = tmp_path / "n.npz"
    np.savez(no_y, x=np.ones((20, 2)))
    with pytest.raises(ValueError, match="Expected arrays 'x' and 'y'"):
        load_dataset(f"npz:{no_y}")
    flat = tmp_path / "f.npz"
    np.savez(flat, x=np.ones(20), y=np.arange(20) % 2)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        load_dataset(f"npz:{flat}")
    with pytest.raises(FileNotFoundError, match="NPZ file not found"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")


# --------------------------------------------------------------------------- CIFAR-10


def write_cifar(root, per_batch=8, test_size=5):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    for name, n in [
        *((f"data_batch_{i}", per_batch) for i in range(1, 6)),
        ("test_batch", test_size),
    ]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        batches[name] = (data, labels)
        # the official batches are Python-2 pickles: bytes keys, a list of labels
        content = {b"batch_label": name.encode(), b"labels": labels, b"data": data}
        content[b"filenames"] = [b"img.png"] * n
        with open(folder / name, "wb") as handle:
            pickle.dump(content, handle, protocol=2)
    meta = {b"label_names": CIFAR_NAMES, b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return batches


def test_cifar10_from_pickle_batches(tmp_path):
    batches = write_cifar(tmp_path)
    ds = load_dataset("cifar10", data_dir=tmp_path, standardize=False)
    assert ds.kind == "image" and ds.num_classes == 10
    assert ds.class_names[:3] == ("airplane", "automobile", "bird")
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (34, 6, 5)
    assert ds.train.x.shape[1:] == (3, 32, 32) and ds.train.x.dtype == torch.float32
    data, labels = batches["test_batch"]
    # channel-major rows: 1024 red values (row-major 32x32), then green, then blue
    assert float(ds.test.x[0, 0, 0, 1]) == pytest.approx(data[0, 1] / 255.0)
    assert float(ds.test.x[0, 1, 0, 0]) == pytest.approx(data[0, 1024] / 255.0)
    assert float(ds.test.x[2, 2, 31, 31]) == pytest.approx(data[2, 3071] / 255.0)
    assert ds.test.y.tolist() == labels
    scaled = load_dataset("cifar10", data_dir=tmp_path)
    per_channel = scaled.train.x.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-5)


def test_cifar10_data_dir_from_environment(tmp_path, monkeypatch):
    write_cifar(tmp_path)
    monkeypatch.setenv("CROSSENT_DATA", str(tmp_path))
    assert len(load_dataset("cifar10").test) == 5


def test_external_sets_found_straight_in_the_data_dir(tmp_path):
    # "read from files the user puts in a data directory": no sub-folder needed.
    write_cifar(tmp_path)
    write_fashion(tmp_path)
    write_conll(tmp_path)
    for name, folder in [
        ("cifar10", "cifar-10-batches-py"),
        ("fashion-mnist", "fashion-mnist"),
        ("conll2003", "conll2003"),
    ]:
        nested = load_dataset(name, data_dir=tmp_path)
        flat = tmp_path / "flat" / name
        flat.parent.mkdir(exist_ok=True)
        (tmp_path / folder).rename(flat)
        ds = load_dataset(name, data_dir=flat)
        assert torch.equal(ds.test.x, nested.test.x) and torch.equal(ds.test.y, nested.test.y)


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": Evil(), b"labels": []}, handle)
    with pytest.raises(pickle.UnpicklingError, match="Refusing to load"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_missing_files_say_what_to_download_and_where(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    assert "cifar-10-python.tar.gz" in message
    assert str(tmp_path / "cifar-10-batches-py") in message


# --------------------------------------------------------------------------- Fashion-MNIST


def write_idx(path, array):
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def write_fashion(root, n_train=40, n_test=10):
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array)
    return arrays


def test_fashion_mnist_from_gzipped_idx(tmp_path):
    arrays = write_fashion(tmp_path)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path, standardize=False)
    assert ds.kind == "image" and ds.num_classes == 10
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert ds.test.x.shape == (10, 1, 28, 28)
    images = torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"].astype(np.float32) / 255)
    assert torch.equal(ds.test.x[:, 0], images)
    assert ds.test.y.tolist() == arrays["t10k-labels-idx1-ubyte.gz"].tolist()
    assert (len(ds.train), len(ds.validation)) == (34, 6)


def test_fashion_mnist_bad_magic_and_missing_files(tmp_path):
    write_fashion(tmp_path)
    with gzip.open(tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(b"\x01\x02\x03\x04junk")
    with pytest.raises(ValueError, match="Expected an IDX file"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    (tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "https://github.com/zalandoresearch/fashion-mnist" in message
    assert "train-images-idx3-ubyte.gz" in message
    assert str(tmp_path / "fashion-mnist") in message


def test_fashion_mnist_truncated_file(tmp_path):
    write_fashion(tmp_path)
    path = tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    with gzip.open(path, "wb") as handle:
        handle.write(raw[:-5])
    with pytest.raises(ValueError, match="data bytes"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


# --------------------------------------------------------------------------- CoNLL-2003

TRAIN = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

The DT B-NP O
EU NNP I-NP B-ORG
. . O O
"""
VALID = """-DOCSTART- -X- -X- O

CRICKET NNP B-NP O
LONDON NNP B-NP B-LOC
"""
TEST = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
calls VBZ B-VP O
"""


def write_conll(root):
    folder = root / "conll2003"
    folder.mkdir(parents=True)
    for name, text in [("train.txt", TRAIN), ("valid.txt", VALID), ("test.txt", TEST)]:
        (folder / name).write_text(text, encoding="utf-8")


def test_conll2003_tokens_and_tags(tmp_path):
    write_conll(tmp_path)
    ds = load_dataset("conll2003", data_dir=tmp_path)
    assert ds.kind == "tokens"
    assert ds.class_names == ("O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER")
    assert ds.num_classes == 6
    # 3 sentences in train (DOCSTART lines skipped), padded to the longest (5 tokens)
    assert ds.train.x.shape == (3, 5) and ds.train.y.shape == (3, 5)
    assert ds.train.x.dtype == torch.int64
    vocab = ds.vocabulary
    # by decreasing count, ties in string order: "." and "EU" occur twice, "." < "EU"
    assert vocab[:4] == ("<pad>", "<unk>", ".", "EU")
    words = [[vocab[i] for i in row if i != 0] for row in ds.train.x.tolist()]
    assert words == [
        ["EU", "rejects", "German", "call", "."],
        ["Peter", "Blackburn"],
        ["The", "EU", "."],
    ]
    tags = [[ds.class_names[t] for t in row if t != -100] for row in ds.train.y.tolist()]
    assert tags[1] == ["B-PER", "I-PER"]
    assert ds.train.y[1, 2:].tolist() == [-100, -100, -100]
    assert ds.train.x[1, 2:].tolist() == [0, 0, 0]
    # words never seen in training map to <unk>
    assert [vocab[i] for i in ds.validation.x[0].tolist()] == ["<unk>", "<unk>"]
    assert [vocab[i] for i in ds.test.x[0].tolist()] == ["EU", "<unk>"]


def test_conll2003_options_and_missing_files(tmp_path):
    write_conll(tmp_path)
    with pytest.warns(UserWarning, match="1 of 3 sentences are longer than max_length=3"):
        ds = load_dataset("conll2003", data_dir=tmp_path, min_freq=2, max_length=3, lowercase=True)
    assert ds.vocabulary == ("<pad>", "<unk>", ".", "eu")
    assert ds.train.x.shape == (3, 3)
    (tmp_path / "conll2003" / "valid.txt").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("conll2003", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "valid.txt" in message and str(tmp_path / "conll2003") in message
    assert "conll2003" in message and "https://" in message
