"""The paper's analyses as commands (Sec. 4.3, Fig. 5, Tables 3-5, Appendix A.1).

Modules: ``overlap`` (plan/exec code-usage overlap of the joint tokenizer), ``plan`` (decoded coarse plans against
the true future, Fig. 5b), ``attention`` (first-exec-token attention over image tokens, plan vs no plan, Fig. 5a),
``runtime`` (decode cost of plan, cached plan, exec only and a 256-token reasoning prefix, Table 5), ``ablate``
(Table 3 / Table 4 style ablations through the pipeline), ``camera`` (Meta-World scene reconstruction and camera
projection), ``commands`` (the ``c2c analyze`` / ``c2c ablate`` command line).
"""
