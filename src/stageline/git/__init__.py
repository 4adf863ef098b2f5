"""The only package that runs git.

``process`` starts every git process (one function for one-shot runs, one class for the
long-lived ones); ``objects`` reads objects, ``write`` writes them (one tree builder,
``commit-tree``, a compare-and-swap ``update-ref``), ``walk`` lists commits and what each
changed, ``worktree`` keeps a clone's index and files in step with an action, ``fsck``
says whether an object is one git writes itself, and ``store`` puts them together as
``Store``, what the rest of stageline holds. Nothing outside this package starts git.
"""
