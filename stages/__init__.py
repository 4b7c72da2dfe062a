"""The pipeline's DVC stages: one thin module per stage (`python -m stages.<name>`), in dvc.yaml's order."""
