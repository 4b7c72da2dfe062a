"""The offline HTML report: sections from every stage's outputs and a maze explorer."""
