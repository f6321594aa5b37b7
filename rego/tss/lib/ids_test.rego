package tss.lib_test

test_repeated_values if {
	data.tss.lib.ids.repeated(["a", "b", "a", "c", "b", "a"]) == ["a", "b"]
	data.tss.lib.ids.repeated(["a", "b"]) == []
	data.tss.lib.ids.repeated([]) == []
	data.tss.lib.ids.repeated(["a"]) == []
	data.tss.lib.ids.repeated([1, "1", 1]) == [1]
	not data.tss.lib.ids.repeated("aa")
	not data.tss.lib.ids.repeated({"a": 1})
}

test_repeat_msgs if {
	data.tss.lib.ids.repeat_msgs("f", ["a", "b", "a"]) == {"node id `a` is listed 2 times in f"}
	data.tss.lib.ids.repeat_msgs("f", ["a", "b"]) == set()
	data.tss.lib.ids.repeat_msgs("f", "aa") == set()
	data.tss.lib.ids.repeat_msgs("f", ["2", "2"]) == {"node id `\"2\"` is listed 2 times in f"}
}

test_shape_msgs if {
	data.tss.lib.ids.shape_msgs("f", {"k": ["a", "b"]}, "k") == set()
	data.tss.lib.ids.shape_msgs("f", {"k": []}, "k") == set()
	data.tss.lib.ids.shape_msgs("f", {}, "k") == {"f is `<missing>`, not an array of node ids"}
	data.tss.lib.ids.shape_msgs("f", "x", "k") == {"f is `<missing>`, not an array of node ids"}
	data.tss.lib.ids.shape_msgs("f", {"k": "a"}, "k") == {"f is `a`, not an array of node ids"}
	data.tss.lib.ids.shape_msgs("f", {"k": ["a", 1, ""]}, "k") == {"f entry #1 is `1`, not a node id", "f entry #2 is `\"\"`, not a node id"}
}

test_fine if {
	data.tss.lib.ids.fine(["a", "b"])
	data.tss.lib.ids.fine([])
	not data.tss.lib.ids.fine(["a", "a"])
	not data.tss.lib.ids.fine(["a", 1])
	not data.tss.lib.ids.fine(["a", ""])
	not data.tss.lib.ids.fine("a")
	not data.tss.lib.ids.fine(null)
}
