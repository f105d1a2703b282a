; Definitions and imports of a Python file. Run with a bounded start depth; definitions nested
; in functions are filtered out by the extractor.
(function_definition name: (identifier) @name) @definition.function
(class_definition name: (identifier) @name) @definition.class
(module (expression_statement (assignment left: (identifier) @name) @definition.variable))
(class_definition body: (block (expression_statement (assignment left: (identifier) @name) @definition.variable)))
(import_statement) @import
(import_from_statement) @import
