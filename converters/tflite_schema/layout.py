# Generated code: do not edit. Regenerate with
#     python -m weightkit.converters.tflite_schema.regenerate
# from google-ai-edge/LiteRT tflite/converter/schema/schema.fbs at commit 3647910a70fe34d0ee0cb96e2e00a421d77bf553
# (sha256 8b9b424c923124df1e722d3d0f52fa273989207053875d07a9d582d51a7e0fa7; Apache License 2.0, Copyright The TensorFlow Authors)
# by flatc 2.0.8: flatc -b --schema schema.fbs
# after removing `(deprecated)` from enum values, union members and tables (see regenerate.py).
"""Fields of every table of the TFLite schema, by field id: (name, kind, argument,
deprecated), see regenerate.py `layout_from_bfbs` for the kinds; and the names of
the values of its enums."""

ROOT = "Model"
FILE_IDENTIFIER = b"TFL3"

TABLES = {
    'ATan2Options': (
    ),
    'AbsOptions': (
    ),
    'AddNOptions': (
    ),
    'AddOptions': (
        ('fused_activation_function', 'scalar', 1, False),
        ('pot_scale_int16', 'scalar', 1, False),
    ),
    'ArgMaxOptions': (
        ('output_type', 'scalar', 1, False),
    ),
    'ArgMinOptions': (
        ('output_type', 'scalar', 1, False),
    ),
    'AssignVariableOptions': (
    ),
    'BatchMatMulOptions': (
        ('adj_x', 'scalar', 1, False),
        ('adj_y', 'scalar', 1, False),
        ('asymmetric_quantize_inputs', 'scalar', 1, False),
    ),
    'BatchToSpaceNDOptions': (
    ),
    'BidirectionalSequenceLSTMOptions': (
        ('fused_activation_function', 'scalar', 1, False),
        ('cell_clip', 'scalar', 4, False),
        ('proj_clip', 'scalar', 4, False),
        ('merge_outputs', 'scalar', 1, False),
        ('time_major', 'scalar', 1, False),
        ('asymmetric_quantize_inputs', 'scalar', 1, False),
    ),
    'BidirectionalSequenceRNNOptions': (
        ('time_major', 'scalar', 1, False),
        ('fused_activation_function', 'scalar', 1, False),
        ('merge_outputs', 'scalar', 1, False),
        ('asymmetric_quantize_inputs', 'scalar', 1, False),
    ),
    'BitcastOptions': (
    ),
    'BitwiseXorOptions': (
    ),
    'BlockwiseQuantization': (
        ('scales', 'scalar', 4, False),
        ('zero_points', 'scalar', 4, False),
        ('block_size', 'scalar', 4, False),
    ),
    'BroadcastToOptions': (
    ),
    'BucketizeOptions': (
        ('boundaries', 'vector', 4, False),
    ),
    'Buffer': (
        ('data', 'vector', 1, False),
        ('offset', 'scalar', 8, False),
        ('size', 'scalar', 8, False),
    ),
    'CallOnceOptions': (
        ('init_subgraph_index', 'scalar', 4, False),
    ),
    'CallOptions': (
        ('subgraph', 'scalar', 4, False),
    ),
    'CastOptions': (
        ('in_data_type', 'scalar', 1, False),
        ('out_data_type', 'scalar', 1, False),
    ),
    'ConcatEmbeddingsOptions': (
        ('num_channels', 'scalar', 4, False),
        ('num_columns_per_channel', 'vector', 4, False),
        ('embedding_dim_per_channel', 'vector', 4, False),
    ),
    'ConcatenationOptions': (
        ('axis', 'scalar', 4, False),
        ('fused_activation_function', 'scalar', 1, False),
    ),
    'Conv2DOptions': (
        ('padding', 'scalar', 1, False),
        ('stride_w', 'scalar', 4, False),
        ('stride_h', 'scalar', 4, False),
        ('fused_activation_function', 'scalar', 1, False),
        ('dilation_w_factor', 'scalar', 4, False),
        ('dilation_h_factor', 'scalar', 4, False),
        ('quantized_bias_type', 'scalar', 1, False),
    ),
    'Conv3DOptions': (
        ('padding', 'scalar', 1, False),
        ('stride_d', 'scalar', 4, False),
        ('stride_w', 'scalar', 4, False),
        ('stride_h', 'scalar', 4, False),
        ('fused_activation_function', 'scalar', 1, False),
        ('dilation_d_factor', 'scalar', 4, False),
        ('dilation_w_factor', 'scalar', 4, False),
        ('dilation_h_factor', 'scalar', 4, False),
    ),
    'CosOptions': (
    ),
    'CumsumOptions': (
        ('exclusive', 'scalar', 1, False),
        ('reverse', 'scalar', 1, False),
    ),
    'CustomQuantization': (
        ('custom', 'vector', 1, False),
    ),
    'DensifyOptions': (
    ),
    'DepthToSpaceOptions': (
        ('block_size', 'scalar', 4, False),
    ),
    'DepthwiseConv2DOptions': (
        ('padding', 'scalar', 1, False),
        ('stride_w', 'scalar', 4, False),
        ('stride_h', 'scalar', 4, False),
        ('depth_multiplier', 'scalar', 4, False),
        ('fused_activation_function', 'scalar', 1, False),
        ('dilation_w_factor', 'scalar', 4, False),
        ('dilation_h_factor', 'scalar', 4, False),
    ),
    'DequantizeOptions': (
    ),
    'DilateOptions': (
    ),
    'DimensionMetadata': (
        ('format', 'scalar', 1, False),
        ('dense_size', 'scalar', 4, False),
        ('array_segments_type', 'scalar', 1, False),
        ('array_segments', 'union', (2, {1: 'Int32Vector', 2: 'Uint16Vector', 3: 'Uint8Vector'}), False),
        ('array_indices_type', 'scalar', 1, False),
        ('array_indices', 'union', (4, {1: 'Int32Vector', 2: 'Uint16Vector', 3: 'Uint8Vector'}), False),
    ),
    'DivOptions': (
        ('fused_activation_function', 'scalar', 1, False),
    ),
    'DynamicUpdateSliceOptions': (
    ),
    'EmbeddingLookupSparseOptions': (
        ('combiner', 'scalar', 1, False),
    ),
    'EqualOptions': (
    ),
    'ExpOptions': (
    ),
    'ExpandDimsOptions': (
    ),
    'ExternalBuffer': (
        ('id', 'scalar', 4, False),
        ('group', 'scalar', 4, False),
        ('offset', 'scalar', 8, False),
        ('length', 'scalar', 8, False),
        ('packing', 'string', None, False),
    ),
    'ExternalBufferGroup': (
        ('name', 'string', None, False),
    ),
    'FakeQuantOptions': (
        ('min', 'scalar', 4, False),
        ('max', 'scalar', 4, False),
        ('num_bits', 'scalar', 4, False),
        ('narrow_range', 'scalar', 1, False),
    ),
    'FillOptions': (
    ),
    'FloorDivOptions': (
    ),
    'FloorModOptions': (
    ),
    'FullyConnectedOptions': (
        ('fused_activation_function', 'scalar', 1, False),
        ('weights_format', 'scalar', 1, False),
        ('keep_num_dims', 'scalar', 1, False),
        ('asymmetric_quantize_inputs', 'scalar', 1, False),
        ('quantized_bias_type', 'scalar', 1, False),
    ),
    'GatherNdOptions': (
    ),
    'GatherOptions': (
        ('axis', 'scalar', 4, False),
        ('batch_dims', 'scalar', 4, False),
    ),
    'GeluOptions': (
        ('approximate', 'scalar', 1, False),
    ),
    'GreaterEqualOptions': (
    ),
    'GreaterOptions': (
    ),
    'HardSwishOptions': (
    ),
    'HashtableFindOptions': (
    ),
    'HashtableImportOptions': (
    ),
    'HashtableOptions': (
        ('table_id', 'scalar', 4, False),
        ('key_dtype', 'scalar', 1, False),
        ('value_dtype', 'scalar', 1, False),
    ),
    'HashtableSizeOptions': (
    ),
    'IfOptions': (
        ('then_subgraph_index', 'scalar', 4, False),
        ('else_subgraph_index', 'scalar', 4, False),
    ),
    'Int32Vector': (
        ('values', 'vector', 4, False),
    ),
    'L2NormOptions': (
        ('fused_activation_function', 'scalar', 1, False),
    ),
    'LSHProjectionOptions': (
        ('type', 'scalar', 1, False),
    ),
    'LSTMOptions': (
        ('fused_activation_function', 'scalar', 1, False),
        ('cell_clip', 'scalar', 4, False),
        ('proj_clip', 'scalar', 4, False),
        ('kernel_type', 'scalar', 1, False),
        ('asymmetric_quantize_inputs', 'scalar', 1, False),
    ),
    'LeakyReluOptions': (
        ('alpha', 'scalar', 4, False),
    ),
    'LessEqualOptions': (
    ),
    'LessOptions': (
    ),
    'LocalResponseNormalizationOptions': (
        ('radius', 'scalar', 4, False),
        ('bias', 'scalar', 4, False),
        ('alpha', 'scalar', 4, False),
        ('beta', 'scalar', 4, False),
    ),
    'LogSoftmaxOptions': (
    ),
    'LogicalAndOptions': (
    ),
    'LogicalNotOptions': (
    ),
    'LogicalOrOptions': (
    ),
    'MatrixDiagOptions': (
    ),
    'MatrixSetDiagOptions': (
    ),
    'MaximumMinimumOptions': (
    ),
    'Metadata': (
        ('name', 'string', None, False),
        ('buffer', 'scalar', 4, False),
    ),
    'MirrorPadOptions': (
        ('mode', 'scalar', 1, False),
    ),
    'Model': (
        ('version', 'scalar', 4, False),
        ('operator_codes', 'vector_table', 'OperatorCode', False),
        ('subgraphs', 'vector_table', 'SubGraph', False),
        ('description', 'string', None, False),
        ('buffers', 'vector_table', 'Buffer', False),
        ('metadata_buffer', 'vector', 4, False),
        ('metadata', 'vector_table', 'Metadata', False),
        ('signature_defs', 'vector_table', 'SignatureDef', False),
        ('external_buffer_groups', 'vector_table', 'ExternalBufferGroup', False),
        ('external_buffers', 'vector_table', 'ExternalBuffer', False),
    ),
    'MulOptions': (
        ('fused_activation_function', 'scalar', 1, False),
    ),
    'MultiAxisQuantization': (
        ('scales', 'scalar', 4, False),
        ('zero_points', 'scalar', 4, False),
        ('block_size', 'scalar', 4, False),
        ('quantized_dimensions', 'vector', 4, False),
    ),
    'NegOptions': (
    ),
    'NonMaxSuppressionV4Options': (
    ),
    'NonMaxSuppressionV5Options': (
    ),
    'NotEqualOptions': (
    ),
    'OneHotOptions': (
        ('axis', 'scalar', 4, False),
    ),
    'Operator': (
        ('opcode_index', 'scalar', 4, False),
        ('inputs', 'vector', 4, False),
        ('outputs', 'vector', 4, False),
        ('builtin_options_type', 'scalar', 1, False),
        ('builtin_options', 'union', (3, {1: 'Conv2DOptions', 2: 'DepthwiseConv2DOptions', 3: 'ConcatEmbeddingsOptions', 4: 'LSHProjectionOptions', 5: 'Pool2DOptions', 6: 'SVDFOptions', 7: 'RNNOptions', 8: 'FullyConnectedOptions', 9: 'SoftmaxOptions', 10: 'ConcatenationOptions', 11: 'AddOptions', 12: 'L2NormOptions', 13: 'LocalResponseNormalizationOptions', 14: 'LSTMOptions', 15: 'ResizeBilinearOptions', 16: 'CallOptions', 17: 'ReshapeOptions', 18: 'SkipGramOptions', 19: 'SpaceToDepthOptions', 20: 'EmbeddingLookupSparseOptions', 21: 'MulOptions', 22: 'PadOptions', 23: 'GatherOptions', 24: 'BatchToSpaceNDOptions', 25: 'SpaceToBatchNDOptions', 26: 'TransposeOptions', 27: 'ReducerOptions', 28: 'SubOptions', 29: 'DivOptions', 30: 'SqueezeOptions', 31: 'SequenceRNNOptions', 32: 'StridedSliceOptions', 33: 'ExpOptions', 34: 'TopKV2Options', 35: 'SplitOptions', 36: 'LogSoftmaxOptions', 37: 'CastOptions', 38: 'DequantizeOptions', 39: 'MaximumMinimumOptions', 40: 'ArgMaxOptions', 41: 'LessOptions', 42: 'NegOptions', 43: 'PadV2Options', 44: 'GreaterOptions', 45: 'GreaterEqualOptions', 46: 'LessEqualOptions', 47: 'SelectOptions', 48: 'SliceOptions', 49: 'TransposeConvOptions', 50: 'SparseToDenseOptions', 51: 'TileOptions', 52: 'ExpandDimsOptions', 53: 'EqualOptions', 54: 'NotEqualOptions', 55: 'ShapeOptions', 56: 'PowOptions', 57: 'ArgMinOptions', 58: 'FakeQuantOptions', 59: 'PackOptions', 60: 'LogicalOrOptions', 61: 'OneHotOptions', 62: 'LogicalAndOptions', 63: 'LogicalNotOptions', 64: 'UnpackOptions', 65: 'FloorDivOptions', 66: 'SquareOptions', 67: 'ZerosLikeOptions', 68: 'FillOptions', 69: 'BidirectionalSequenceLSTMOptions', 70: 'BidirectionalSequenceRNNOptions', 71: 'UnidirectionalSequenceLSTMOptions', 72: 'FloorModOptions', 73: 'RangeOptions', 74: 'ResizeNearestNeighborOptions', 75: 'LeakyReluOptions', 76: 'SquaredDifferenceOptions', 77: 'MirrorPadOptions', 78: 'AbsOptions', 79: 'SplitVOptions', 80: 'UniqueOptions', 81: 'ReverseV2Options', 82: 'AddNOptions', 83: 'GatherNdOptions', 84: 'CosOptions', 85: 'WhereOptions', 86: 'RankOptions', 87: 'ReverseSequenceOptions', 88: 'MatrixDiagOptions', 89: 'QuantizeOptions', 90: 'MatrixSetDiagOptions', 91: 'HardSwishOptions', 92: 'IfOptions', 93: 'WhileOptions', 94: 'DepthToSpaceOptions', 95: 'NonMaxSuppressionV4Options', 96: 'NonMaxSuppressionV5Options', 97: 'ScatterNdOptions', 98: 'SelectV2Options', 99: 'DensifyOptions', 100: 'SegmentSumOptions', 101: 'BatchMatMulOptions', 102: 'CumsumOptions', 103: 'CallOnceOptions', 104: 'BroadcastToOptions', 105: 'Rfft2dOptions', 106: 'Conv3DOptions', 107: 'HashtableOptions', 108: 'HashtableFindOptions', 109: 'HashtableImportOptions', 110: 'HashtableSizeOptions', 111: 'VarHandleOptions', 112: 'ReadVariableOptions', 113: 'AssignVariableOptions', 114: 'RandomOptions', 115: 'BucketizeOptions', 116: 'GeluOptions', 117: 'DynamicUpdateSliceOptions', 118: 'UnsortedSegmentProdOptions', 119: 'UnsortedSegmentMaxOptions', 120: 'UnsortedSegmentMinOptions', 121: 'UnsortedSegmentSumOptions', 122: 'ATan2Options', 123: 'SignOptions', 124: 'BitcastOptions', 125: 'BitwiseXorOptions', 126: 'RightShiftOptions'}), False),
        ('custom_options', 'vector', 1, False),
        ('custom_options_format', 'scalar', 1, False),
        ('mutating_variable_inputs', 'vector', 1, False),
        ('intermediates', 'vector', 4, False),
        ('large_custom_options_offset', 'scalar', 8, False),
        ('large_custom_options_size', 'scalar', 8, False),
        ('builtin_options_2_type', 'scalar', 1, False),
        ('builtin_options_2', 'union', (11, {1: 'StablehloConcatenateOptions', 2: 'StablehloBroadcastInDimOptions', 3: 'StablehloSliceOptions', 4: 'StablehloConvolutionOptions', 5: 'StablehloCustomCallOptions', 6: 'StablehloReduceOptions', 7: 'StablehloScatterOptions', 8: 'StablehloCompareOptions', 9: 'StablehloDynamicSliceOptions', 10: 'StablehloPadOptions', 11: 'StablehloIotaOptions', 12: 'StablehloDotGeneralOptions', 13: 'StablehloReduceWindowOptions', 14: 'StablehloSortOptions', 15: 'StablehloWhileOptions', 16: 'StablehloGatherOptions', 17: 'StablehloTransposeOptions', 18: 'DilateOptions', 19: 'StablehloRngBitGeneratorOptions', 20: 'ReduceWindowOptions', 21: 'StableHLOCompositeOptions', 22: 'StablehloShiftLeftOptions', 23: 'StablehloCaseOptions'}), False),
        ('debug_metadata_index', 'scalar', 4, False),
    ),
    'OperatorCode': (
        ('deprecated_builtin_code', 'scalar', 1, False),
        ('custom_code', 'string', None, False),
        ('version', 'scalar', 4, False),
        ('builtin_code', 'scalar', 4, False),
    ),
    'PackOptions': (
        ('values_count', 'scalar', 4, False),
        ('axis', 'scalar', 4, False),
    ),
    'PadOptions': (
    ),
    'PadV2Options': (
    ),
    'Pool2DOptions': (
        ('padding', 'scalar', 1, False),
        ('stride_w', 'scalar', 4, False),
        ('stride_h', 'scalar', 4, False),
        ('filter_width', 'scalar', 4, False),
        ('filter_height', 'scalar', 4, False),
        ('fused_activation_function', 'scalar', 1, False),
    ),
    'PowOptions': (
    ),
    'QuantizationParameters': (
        ('min', 'vector', 4, False),
        ('max', 'vector', 4, False),
        ('scale', 'vector', 4, False),
        ('zero_point', 'vector', 8, False),
        ('details_type', 'scalar', 1, False),
        ('details', 'union', (4, {1: 'CustomQuantization', 2: 'BlockwiseQuantization', 3: 'MultiAxisQuantization'}), False),
        ('quantized_dimension', 'scalar', 4, False),
    ),
    'QuantizeOptions': (
    ),
    'RNNOptions': (
        ('fused_activation_function', 'scalar', 1, False),
        ('asymmetric_quantize_inputs', 'scalar', 1, False),
    ),
    'RandomOptions': (
        ('seed', 'scalar', 8, False),
        ('seed2', 'scalar', 8, False),
    ),
    'RangeOptions': (
    ),
    'RankOptions': (
    ),
    'ReadVariableOptions': (
    ),
    'ReduceWindowOptions': (
        ('reduce_function', 'scalar', 4, False),
    ),
    'ReducerOptions': (
        ('keep_dims', 'scalar', 1, False),
    ),
    'ReshapeOptions': (
        ('new_shape', 'vector', 4, False),
    ),
    'ResizeBilinearOptions': (
        ('new_height', 'scalar', 4, True),
        ('new_width', 'scalar', 4, True),
        ('align_corners', 'scalar', 1, False),
        ('half_pixel_centers', 'scalar', 1, False),
    ),
    'ResizeNearestNeighborOptions': (
        ('align_corners', 'scalar', 1, False),
        ('half_pixel_centers', 'scalar', 1, False),
    ),
    'ReverseSequenceOptions': (
        ('seq_dim', 'scalar', 4, False),
        ('batch_dim', 'scalar', 4, False),
    ),
    'ReverseV2Options': (
    ),
    'Rfft2dOptions': (
    ),
    'RightShiftOptions': (
    ),
    'SVDFOptions': (
        ('rank', 'scalar', 4, False),
        ('fused_activation_function', 'scalar', 1, False),
        ('asymmetric_quantize_inputs', 'scalar', 1, False),
    ),
    'ScatterNdOptions': (
    ),
    'SegmentSumOptions': (
    ),
    'SelectOptions': (
    ),
    'SelectV2Options': (
    ),
    'SequenceRNNOptions': (
        ('time_major', 'scalar', 1, False),
        ('fused_activation_function', 'scalar', 1, False),
        ('asymmetric_quantize_inputs', 'scalar', 1, False),
    ),
    'ShapeOptions': (
        ('out_type', 'scalar', 1, False),
    ),
    'SignOptions': (
    ),
    'SignatureDef': (
        ('inputs', 'vector_table', 'TensorMap', False),
        ('outputs', 'vector_table', 'TensorMap', False),
        ('signature_key', 'string', None, False),
        ('deprecated_tag', 'string', None, True),
        ('subgraph_index', 'scalar', 4, False),
    ),
    'SkipGramOptions': (
        ('ngram_size', 'scalar', 4, False),
        ('max_skip_size', 'scalar', 4, False),
        ('include_all_ngrams', 'scalar', 1, False),
    ),
    'SliceOptions': (
    ),
    'SoftmaxOptions': (
        ('beta', 'scalar', 4, False),
    ),
    'SpaceToBatchNDOptions': (
    ),
    'SpaceToDepthOptions': (
        ('block_size', 'scalar', 4, False),
    ),
    'SparseToDenseOptions': (
        ('validate_indices', 'scalar', 1, False),
    ),
    'SparsityParameters': (
        ('traversal_order', 'vector', 4, False),
        ('block_map', 'vector', 4, False),
        ('dim_metadata', 'vector_table', 'DimensionMetadata', False),
    ),
    'SplitOptions': (
        ('num_splits', 'scalar', 4, False),
    ),
    'SplitVOptions': (
        ('num_splits', 'scalar', 4, False),
    ),
    'SquareOptions': (
    ),
    'SquaredDifferenceOptions': (
    ),
    'SqueezeOptions': (
        ('squeeze_dims', 'vector', 4, False),
    ),
    'StableHLOCompositeOptions': (
        ('name', 'string', None, False),
        ('decomposition_subgraph_index', 'scalar', 4, False),
        ('composite_attributes', 'vector', 1, False),
        ('composite_attributes_format', 'scalar', 1, False),
        ('version', 'scalar', 4, False),
    ),
    'StablehloBroadcastInDimOptions': (
        ('broadcast_dimensions', 'vector', 8, False),
    ),
    'StablehloCaseOptions': (
        ('branch_subgraph_indices', 'vector', 4, False),
    ),
    'StablehloCompareOptions': (
        ('comparison_direction', 'scalar', 4, False),
        ('compare_type', 'scalar', 4, False),
    ),
    'StablehloConcatenateOptions': (
        ('dimension', 'scalar', 8, False),
    ),
    'StablehloConvolutionOptions': (
        ('window_strides', 'vector', 8, False),
        ('padding', 'vector', 8, False),
        ('lhs_dilation', 'vector', 8, False),
        ('rhs_dilation', 'vector', 8, False),
        ('window_reversal', 'vector', 1, False),
        ('input_batch_dimension', 'scalar', 8, False),
        ('input_feature_dimension', 'scalar', 8, False),
        ('input_spatial_dimensions', 'vector', 8, False),
        ('kernel_input_feature_dimension', 'scalar', 8, False),
        ('kernel_output_feature_dimension', 'scalar', 8, False),
        ('kernel_spatial_dimensions', 'vector', 8, False),
        ('output_batch_dimension', 'scalar', 8, False),
        ('output_feature_dimension', 'scalar', 8, False),
        ('output_spatial_dimensions', 'vector', 8, False),
        ('feature_group_count', 'scalar', 8, False),
        ('batch_group_count', 'scalar', 8, False),
        ('precision_config', 'vector', 4, False),
    ),
    'StablehloCustomCallOptions': (
        ('call_target_name', 'string', None, False),
        ('has_side_effect', 'scalar', 1, False),
        ('backend_config', 'string', None, False),
        ('api_version', 'scalar', 4, False),
        ('called_computations', 'vector', 4, False),
        ('custom_attributes', 'vector', 1, False),
    ),
    'StablehloDotGeneralOptions': (
        ('lhs_batching_dimensions', 'vector', 8, False),
        ('rhs_batching_dimensions', 'vector', 8, False),
        ('lhs_contracting_dimensions', 'vector', 8, False),
        ('rhs_contracting_dimensions', 'vector', 8, False),
        ('precision_config', 'vector', 4, False),
    ),
    'StablehloDynamicSliceOptions': (
        ('slice_sizes', 'vector', 8, False),
    ),
    'StablehloGatherOptions': (
        ('offset_dims', 'vector', 8, False),
        ('collapsed_slice_dims', 'vector', 8, False),
        ('start_index_map', 'vector', 8, False),
        ('index_vector_dim', 'scalar', 8, False),
        ('slice_sizes', 'vector', 8, False),
        ('indices_are_sorted', 'scalar', 1, False),
    ),
    'StablehloIotaOptions': (
        ('iota_dimension', 'scalar', 8, False),
    ),
    'StablehloPadOptions': (
        ('edge_padding_low', 'vector', 8, False),
        ('edge_padding_high', 'vector', 8, False),
        ('interior_padding', 'vector', 8, False),
    ),
    'StablehloReduceOptions': (
        ('dimensions', 'vector', 8, False),
        ('body_subgraph_index', 'scalar', 4, False),
    ),
    'StablehloReduceWindowOptions': (
        ('window_dimensions', 'vector', 8, False),
        ('window_strides', 'vector', 8, False),
        ('base_dilations', 'vector', 8, False),
        ('window_dilations', 'vector', 8, False),
        ('padding', 'vector', 8, False),
        ('body_subgraph_index', 'scalar', 4, False),
    ),
    'StablehloRngBitGeneratorOptions': (
        ('algorithm', 'scalar', 1, False),
    ),
    'StablehloScatterOptions': (
        ('indices_are_sorted', 'scalar', 1, False),
        ('update_window_dims', 'vector', 8, False),
        ('inserted_window_dims', 'vector', 8, False),
        ('scatter_dims_to_operand_dims', 'vector', 8, False),
        ('index_vector_dim', 'scalar', 8, False),
        ('unique_indices', 'scalar', 1, False),
        ('update_computation_subgraph_index', 'scalar', 4, False),
    ),
    'StablehloShiftLeftOptions': (
    ),
    'StablehloSliceOptions': (
        ('start_indices', 'vector', 8, False),
        ('limit_indices', 'vector', 8, False),
        ('strides', 'vector', 8, False),
    ),
    'StablehloSortOptions': (
        ('dimension', 'scalar', 8, False),
        ('is_stable', 'scalar', 1, False),
        ('comparator_subgraph_index', 'scalar', 4, False),
    ),
    'StablehloTransposeOptions': (
        ('permutation', 'vector', 8, False),
    ),
    'StablehloWhileOptions': (
        ('cond_subgraph_index', 'scalar', 4, False),
        ('body_subgraph_index', 'scalar', 4, False),
    ),
    'StridedSliceOptions': (
        ('begin_mask', 'scalar', 4, False),
        ('end_mask', 'scalar', 4, False),
        ('ellipsis_mask', 'scalar', 4, False),
        ('new_axis_mask', 'scalar', 4, False),
        ('shrink_axis_mask', 'scalar', 4, False),
        ('offset', 'scalar', 1, False),
    ),
    'SubGraph': (
        ('tensors', 'vector_table', 'Tensor', False),
        ('inputs', 'vector', 4, False),
        ('outputs', 'vector', 4, False),
        ('operators', 'vector_table', 'Operator', False),
        ('name', 'string', None, False),
        ('debug_metadata_index', 'scalar', 4, False),
    ),
    'SubOptions': (
        ('fused_activation_function', 'scalar', 1, False),
        ('pot_scale_int16', 'scalar', 1, False),
    ),
    'Tensor': (
        ('shape', 'vector', 4, False),
        ('type', 'scalar', 1, False),
        ('buffer', 'scalar', 4, False),
        ('name', 'string', None, False),
        ('quantization', 'table', 'QuantizationParameters', False),
        ('is_variable', 'scalar', 1, False),
        ('sparsity', 'table', 'SparsityParameters', False),
        ('shape_signature', 'vector', 4, False),
        ('has_rank', 'scalar', 1, False),
        ('variant_tensors', 'vector_table', 'VariantSubType', False),
        ('external_buffer', 'scalar', 4, False),
    ),
    'TensorMap': (
        ('name', 'string', None, False),
        ('tensor_index', 'scalar', 4, False),
    ),
    'TileOptions': (
    ),
    'TopKV2Options': (
    ),
    'TransposeConvOptions': (
        ('padding', 'scalar', 1, False),
        ('stride_w', 'scalar', 4, False),
        ('stride_h', 'scalar', 4, False),
        ('fused_activation_function', 'scalar', 1, False),
        ('quantized_bias_type', 'scalar', 1, False),
    ),
    'TransposeOptions': (
    ),
    'Uint16Vector': (
        ('values', 'vector', 2, False),
    ),
    'Uint8Vector': (
        ('values', 'vector', 1, False),
    ),
    'UnidirectionalSequenceLSTMOptions': (
        ('fused_activation_function', 'scalar', 1, False),
        ('cell_clip', 'scalar', 4, False),
        ('proj_clip', 'scalar', 4, False),
        ('time_major', 'scalar', 1, False),
        ('asymmetric_quantize_inputs', 'scalar', 1, False),
        ('diagonal_recurrent_tensors', 'scalar', 1, False),
    ),
    'UniqueOptions': (
        ('idx_out_type', 'scalar', 1, False),
    ),
    'UnpackOptions': (
        ('num', 'scalar', 4, False),
        ('axis', 'scalar', 4, False),
    ),
    'UnsortedSegmentMaxOptions': (
    ),
    'UnsortedSegmentMinOptions': (
    ),
    'UnsortedSegmentProdOptions': (
    ),
    'UnsortedSegmentSumOptions': (
    ),
    'VarHandleOptions': (
        ('container', 'string', None, False),
        ('shared_name', 'string', None, False),
    ),
    'VariantSubType': (
        ('shape', 'vector', 4, False),
        ('type', 'scalar', 1, False),
        ('has_rank', 'scalar', 1, False),
    ),
    'WhereOptions': (
    ),
    'WhileOptions': (
        ('cond_subgraph_index', 'scalar', 4, False),
        ('body_subgraph_index', 'scalar', 4, False),
    ),
    'ZerosLikeOptions': (
    ),
}

ENUMS = {
    'ActivationFunctionType': {
        0: 'NONE',
        1: 'RELU',
        2: 'RELU_N1_TO_1',
        3: 'RELU6',
        4: 'TANH',
        5: 'SIGN_BIT',
    },
    'BuiltinOperator': {
        0: 'ADD',
        1: 'AVERAGE_POOL_2D',
        2: 'CONCATENATION',
        3: 'CONV_2D',
        4: 'DEPTHWISE_CONV_2D',
        5: 'DEPTH_TO_SPACE',
        6: 'DEQUANTIZE',
        7: 'EMBEDDING_LOOKUP',
        8: 'FLOOR',
        9: 'FULLY_CONNECTED',
        10: 'HASHTABLE_LOOKUP',
        11: 'L2_NORMALIZATION',
        12: 'L2_POOL_2D',
        13: 'LOCAL_RESPONSE_NORMALIZATION',
        14: 'LOGISTIC',
        15: 'LSH_PROJECTION',
        16: 'LSTM',
        17: 'MAX_POOL_2D',
        18: 'MUL',
        19: 'RELU',
        20: 'RELU_N1_TO_1',
        21: 'RELU6',
        22: 'RESHAPE',
        23: 'RESIZE_BILINEAR',
        24: 'RNN',
        25: 'SOFTMAX',
        26: 'SPACE_TO_DEPTH',
        27: 'SVDF',
        28: 'TANH',
        29: 'CONCAT_EMBEDDINGS',
        30: 'SKIP_GRAM',
        31: 'CALL',
        32: 'CUSTOM',
        33: 'EMBEDDING_LOOKUP_SPARSE',
        34: 'PAD',
        35: 'UNIDIRECTIONAL_SEQUENCE_RNN',
        36: 'GATHER',
        37: 'BATCH_TO_SPACE_ND',
        38: 'SPACE_TO_BATCH_ND',
        39: 'TRANSPOSE',
        40: 'MEAN',
        41: 'SUB',
        42: 'DIV',
        43: 'SQUEEZE',
        44: 'UNIDIRECTIONAL_SEQUENCE_LSTM',
        45: 'STRIDED_SLICE',
        46: 'BIDIRECTIONAL_SEQUENCE_RNN',
        47: 'EXP',
        48: 'TOPK_V2',
        49: 'SPLIT',
        50: 'LOG_SOFTMAX',
        51: 'DELEGATE',
        52: 'BIDIRECTIONAL_SEQUENCE_LSTM',
        53: 'CAST',
        54: 'PRELU',
        55: 'MAXIMUM',
        56: 'ARG_MAX',
        57: 'MINIMUM',
        58: 'LESS',
        59: 'NEG',
        60: 'PADV2',
        61: 'GREATER',
        62: 'GREATER_EQUAL',
        63: 'LESS_EQUAL',
        64: 'SELECT',
        65: 'SLICE',
        66: 'SIN',
        67: 'TRANSPOSE_CONV',
        68: 'SPARSE_TO_DENSE',
        69: 'TILE',
        70: 'EXPAND_DIMS',
        71: 'EQUAL',
        72: 'NOT_EQUAL',
        73: 'LOG',
        74: 'SUM',
        75: 'SQRT',
        76: 'RSQRT',
        77: 'SHAPE',
        78: 'POW',
        79: 'ARG_MIN',
        80: 'FAKE_QUANT',
        81: 'REDUCE_PROD',
        82: 'REDUCE_MAX',
        83: 'PACK',
        84: 'LOGICAL_OR',
        85: 'ONE_HOT',
        86: 'LOGICAL_AND',
        87: 'LOGICAL_NOT',
        88: 'UNPACK',
        89: 'REDUCE_MIN',
        90: 'FLOOR_DIV',
        91: 'REDUCE_ANY',
        92: 'SQUARE',
        93: 'ZEROS_LIKE',
        94: 'FILL',
        95: 'FLOOR_MOD',
        96: 'RANGE',
        97: 'RESIZE_NEAREST_NEIGHBOR',
        98: 'LEAKY_RELU',
        99: 'SQUARED_DIFFERENCE',
        100: 'MIRROR_PAD',
        101: 'ABS',
        102: 'SPLIT_V',
        103: 'UNIQUE',
        104: 'CEIL',
        105: 'REVERSE_V2',
        106: 'ADD_N',
        107: 'GATHER_ND',
        108: 'COS',
        109: 'WHERE',
        110: 'RANK',
        111: 'ELU',
        112: 'REVERSE_SEQUENCE',
        113: 'MATRIX_DIAG',
        114: 'QUANTIZE',
        115: 'MATRIX_SET_DIAG',
        116: 'ROUND',
        117: 'HARD_SWISH',
        118: 'IF',
        119: 'WHILE',
        120: 'NON_MAX_SUPPRESSION_V4',
        121: 'NON_MAX_SUPPRESSION_V5',
        122: 'SCATTER_ND',
        123: 'SELECT_V2',
        124: 'DENSIFY',
        125: 'SEGMENT_SUM',
        126: 'BATCH_MATMUL',
        127: 'PLACEHOLDER_FOR_GREATER_OP_CODES',
        128: 'CUMSUM',
        129: 'CALL_ONCE',
        130: 'BROADCAST_TO',
        131: 'RFFT2D',
        132: 'CONV_3D',
        133: 'IMAG',
        134: 'REAL',
        135: 'COMPLEX_ABS',
        136: 'HASHTABLE',
        137: 'HASHTABLE_FIND',
        138: 'HASHTABLE_IMPORT',
        139: 'HASHTABLE_SIZE',
        140: 'REDUCE_ALL',
        141: 'CONV_3D_TRANSPOSE',
        142: 'VAR_HANDLE',
        143: 'READ_VARIABLE',
        144: 'ASSIGN_VARIABLE',
        145: 'BROADCAST_ARGS',
        146: 'RANDOM_STANDARD_NORMAL',
        147: 'BUCKETIZE',
        148: 'RANDOM_UNIFORM',
        149: 'MULTINOMIAL',
        150: 'GELU',
        151: 'DYNAMIC_UPDATE_SLICE',
        152: 'RELU_0_TO_1',
        153: 'UNSORTED_SEGMENT_PROD',
        154: 'UNSORTED_SEGMENT_MAX',
        155: 'UNSORTED_SEGMENT_SUM',
        156: 'ATAN2',
        157: 'UNSORTED_SEGMENT_MIN',
        158: 'SIGN',
        159: 'BITCAST',
        160: 'BITWISE_XOR',
        161: 'RIGHT_SHIFT',
        162: 'STABLEHLO_LOGISTIC',
        163: 'STABLEHLO_ADD',
        164: 'STABLEHLO_DIVIDE',
        165: 'STABLEHLO_MULTIPLY',
        166: 'STABLEHLO_MAXIMUM',
        167: 'STABLEHLO_RESHAPE',
        168: 'STABLEHLO_CLAMP',
        169: 'STABLEHLO_CONCATENATE',
        170: 'STABLEHLO_BROADCAST_IN_DIM',
        171: 'STABLEHLO_CONVOLUTION',
        172: 'STABLEHLO_SLICE',
        173: 'STABLEHLO_CUSTOM_CALL',
        174: 'STABLEHLO_REDUCE',
        175: 'STABLEHLO_ABS',
        176: 'STABLEHLO_AND',
        177: 'STABLEHLO_COSINE',
        178: 'STABLEHLO_EXPONENTIAL',
        179: 'STABLEHLO_FLOOR',
        180: 'STABLEHLO_LOG',
        181: 'STABLEHLO_MINIMUM',
        182: 'STABLEHLO_NEGATE',
        183: 'STABLEHLO_OR',
        184: 'STABLEHLO_POWER',
        185: 'STABLEHLO_REMAINDER',
        186: 'STABLEHLO_RSQRT',
        187: 'STABLEHLO_SELECT',
        188: 'STABLEHLO_SUBTRACT',
        189: 'STABLEHLO_TANH',
        190: 'STABLEHLO_SCATTER',
        191: 'STABLEHLO_COMPARE',
        192: 'STABLEHLO_CONVERT',
        193: 'STABLEHLO_DYNAMIC_SLICE',
        194: 'STABLEHLO_DYNAMIC_UPDATE_SLICE',
        195: 'STABLEHLO_PAD',
        196: 'STABLEHLO_IOTA',
        197: 'STABLEHLO_DOT_GENERAL',
        198: 'STABLEHLO_REDUCE_WINDOW',
        199: 'STABLEHLO_SORT',
        200: 'STABLEHLO_WHILE',
        201: 'STABLEHLO_GATHER',
        202: 'STABLEHLO_TRANSPOSE',
        203: 'DILATE',
        204: 'STABLEHLO_RNG_BIT_GENERATOR',
        205: 'REDUCE_WINDOW',
        206: 'STABLEHLO_COMPOSITE',
        207: 'STABLEHLO_SHIFT_LEFT',
        208: 'STABLEHLO_CBRT',
        209: 'STABLEHLO_CASE',
    },
    'CombinerType': {
        0: 'SUM',
        1: 'MEAN',
        2: 'SQRTN',
    },
    'CustomOptionsFormat': {
        0: 'FLEXBUFFERS',
    },
    'DimensionType': {
        0: 'DENSE',
        1: 'SPARSE_CSR',
    },
    'FullyConnectedOptionsWeightsFormat': {
        0: 'DEFAULT',
        1: 'SHUFFLED4x16INT8',
    },
    'LSHProjectionType': {
        0: 'UNKNOWN',
        1: 'SPARSE',
        2: 'DENSE',
    },
    'LSTMKernelType': {
        0: 'FULL',
        1: 'BASIC',
    },
    'MirrorPadMode': {
        0: 'REFLECT',
        1: 'SYMMETRIC',
    },
    'Padding': {
        0: 'SAME',
        1: 'VALID',
    },
    'ReduceWindowFunction': {
        0: 'UNSUPPORTED',
        1: 'ADD',
        2: 'MUL',
        3: 'MINIMUM',
        4: 'MAXIMUM',
        5: 'ALL',
        6: 'ANY',
    },
    'RngAlgorithm': {
        0: 'DEFAULT',
        1: 'PHILOX',
        2: 'THREEFRY',
    },
    'StablehloComparisonDirection': {
        0: 'STABLEHLO_COMPARISON_DIRECTION_EQ',
        1: 'STABLEHLO_COMPARISON_DIRECTION_NE',
        2: 'STABLEHLO_COMPARISON_DIRECTION_GE',
        3: 'STABLEHLO_COMPARISON_DIRECTION_GT',
        4: 'STABLEHLO_COMPARISON_DIRECTION_LE',
        5: 'STABLEHLO_COMPARISON_DIRECTION_LT',
    },
    'StablehloComparisonType': {
        0: 'STABLEHLO_COMPARISON_TYPE_NOTYPE',
        1: 'STABLEHLO_COMPARISON_TYPE_FLOAT',
        2: 'STABLEHLO_COMPARISON_TYPE_FLOAT_TOTAL_ORDER',
        3: 'STABLEHLO_COMPARISON_TYPE_SIGNED',
        4: 'STABLEHLO_COMPARISON_TYPE_UNSIGNED',
    },
    'StablehloPrecisionConfig': {
        0: 'DEFAULT',
        1: 'HIGH',
        2: 'HIGHEST',
    },
    'TensorType': {
        0: 'FLOAT32',
        1: 'FLOAT16',
        2: 'INT32',
        3: 'UINT8',
        4: 'INT64',
        5: 'STRING',
        6: 'BOOL',
        7: 'INT16',
        8: 'COMPLEX64',
        9: 'INT8',
        10: 'FLOAT64',
        11: 'COMPLEX128',
        12: 'UINT64',
        13: 'RESOURCE',
        14: 'VARIANT',
        15: 'UINT32',
        16: 'UINT16',
        17: 'INT4',
        18: 'BFLOAT16',
        19: 'INT2',
        20: 'UINT4',
        21: 'FLOAT8_E4M3FN',
        22: 'FLOAT8_E5M2',
    },
}
