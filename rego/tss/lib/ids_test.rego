package tss.lib_test

import data.tss.lib.ids

test_repeated_values if {
	ids.repeated(["a", "b", "a", "c", "b", "a"]) == ["a", "b"]
	ids.repeated(["a", "b"]) == []
	ids.repeated([]) == []
	ids.repeated(["a"]) == []
	ids.repeated([1, "1", 1]) == [1]
	not ids.repeated("aa")
	not ids.repeated({"a": 1})
}

test_repeat_msgs if {
	ids.repeat_msgs("f", ["a", "b", "a"]) == {"node id `a` is listed 2 times in f"}
	ids.repeat_msgs("f", ["a", "b"]) == set()
	ids.repeat_msgs("f", "aa") == set()
	ids.repeat_msgs("f", ["2", "2"]) == {"node id `\"2\"` is listed 2 times in f"}
}

test_shape_msgs if {
	ids.shape_msgs("f", {"k": ["a", "b"]}, "k") == set()
	ids.shape_msgs("f", {"k": []}, "k") == set()
	ids.shape_msgs("f", {}, "k") == {"f is `<missing>`, not an array of node ids"}
	ids.shape_msgs("f", "x", "k") == {"f is `<missing>`, not an array of node ids"}
	ids.shape_msgs("f", {"k": "a"}, "k") == {"f is `a`, not an array of node ids"}
	ids.shape_msgs("f", {"k": ["a", 1, ""]}, "k") == {"f entry #1 is `1`, not a node id", "f entry #2 is `\"\"`, not a node id"}
}

test_fine if {
	ids.fine(["a", "b"])
	ids.fine([])
	not ids.fine(["a", "a"])
	not ids.fine(["a", 1])
	not ids.fine(["a", ""])
	not ids.fine("a")
	not ids.fine(null)
}
