"""Reading finished runs: tables over seeds (``cil report``) and figures (``cil plot``)."""
