; Assignments and typed parameters, for light type inference inside one function or `__init__`.
(assignment left: (identifier) @target) @assign
(assignment left: (attribute object: (identifier) @object attribute: (identifier) @target)) @assign
(typed_parameter (identifier) @target type: (type) @type) @param
(typed_default_parameter name: (identifier) @target type: (type) @type) @param
(with_item value: (as_pattern (call) @value alias: (as_pattern_target (identifier) @target))) @with
