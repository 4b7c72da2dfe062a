"""bench dvc_yaml: each loader parses what PyYAML parses; the report counts the lock's stages."""

import json

import yaml

from mazesearch.bench import dvc_yaml

LOCK = """schema: '2.0'
stages:
  validate:  # a comment the round-trip loader keeps
    cmd: python -m stages.validate
    deps:
    - path: params.yaml
      hash: md5
      md5: 0123456789abcdef0123456789abcdef
      size: 100
  generate@test:
    cmd: python -m stages.generate test
    params:
      params.yaml:
        datasets.test.seed: 3
        datasets.test.sizes: [3, 4, 4]
  vocab:
    cmd: python -m stages.vocab
"""


def test_loaders_agree_with_pyyaml_and_the_c_parser_is_installed():
    loaders = dvc_yaml._loaders()
    assert set(loaders) == {"safe_pure", "safe_c", "round_trip"}  # ruamel.yaml.clib is a dependency
    expected = yaml.safe_load(LOCK)
    for name, load in loaders.items():
        assert json.loads(json.dumps(load(LOCK))) == expected, name


def test_report_counts_lines_and_stages(tmp_path):
    (tmp_path / "dvc.lock").write_text(LOCK)
    out = tmp_path / "bench.json"
    dvc_yaml.main(["--root", str(tmp_path), "--repeats", "1", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["c_parser"] is True and set(doc["files"]) == {"dvc.lock"}
    lock = doc["files"]["dvc.lock"]
    assert lock["lines"] == LOCK.count("\n") and doc["lock_stages"] == 3
    assert doc["round_trip_s_per_full_repro"] == round(lock["round_trip"] * 3, 1)
